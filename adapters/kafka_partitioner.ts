/**
 * kafkajs's `DefaultPartitioner` (the Java client's murmur2 of the key,
 * positive, modulo the partition count), computed with 32-bit integer
 * arithmetic. kafkajs computes the same hash through its 64-bit `Long`
 * emulation, a `Buffer` per key and a filtered partition list per message:
 * about 5 % of the sensors' process at 33 000 readings/s (bench/RESULTS.md).
 * The partition of every key is the same as with kafkajs's (a property test
 * compares them), so producers of either kind agree on where a device's
 * readings go.
 *
 * @module
 */
import { type ICustomPartitioner, Partitioners } from "kafkajs";

const SEED = 0x9747b28c;
const M = 0x5bd1e995;
const encoder = new TextEncoder();
/** Reused for keys up to its size (device ids are short); longer keys get their own bytes. */
const scratch = new Uint8Array(512);

/** The Java client's murmur2 (`Utils.murmur2`) of `data`, as a signed 32-bit integer. */
export function murmur2(data: Uint8Array, length = data.length): number {
  let h = (SEED ^ length) | 0;
  const length4 = length >> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k = data[i4]! | (data[i4 + 1]! << 8) | (data[i4 + 2]! << 16) | (data[i4 + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  // The Java switch falls through from 3 to 1.
  const tail = length & ~3;
  const rest = length & 3;
  if (rest >= 3) h ^= data[tail + 2]! << 16;
  if (rest >= 2) h ^= data[tail + 1]! << 8;
  if (rest >= 1) {
    h ^= data[tail]!;
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** The partition of a string key among `partitions`, as kafkajs's DefaultPartitioner picks it. */
export function keyPartition(key: string, partitions: number): number {
  let hash: number;
  if (key.length * 3 <= scratch.length) {
    const { written } = encoder.encodeInto(key, scratch);
    hash = murmur2(scratch, written);
  } else {
    hash = murmur2(encoder.encode(key));
  }
  return (hash & 0x7fffffff) % partitions;
}

/**
 * A kafkajs `createPartitioner` that places keyed string messages like
 * `Partitioners.DefaultPartitioner`; an explicit partition is kept, and any
 * other message (no key, a Buffer key) goes to kafkajs's own.
 */
export const FastDefaultPartitioner: ICustomPartitioner = () => {
  const fallback = Partitioners.DefaultPartitioner();
  return (args) => {
    const { message, partitionMetadata } = args;
    if (message.partition !== undefined && message.partition !== null) return message.partition;
    if (typeof message.key === "string") return keyPartition(message.key, partitionMetadata.length);
    return fallback(args);
  };
};
