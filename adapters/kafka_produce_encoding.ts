/**
 * Kafka's Produce request body (the layout of versions 3–7) with its record
 * batches (magic 2, CRC32C, varints) written straight into one byte array:
 * the same bytes kafkajs 2.2.4's own encoder writes (a property test compares
 * them), without its per-record garbage. kafkajs builds every record in a new
 * 512-byte `Buffer`, every varint in another small `Buffer` and every
 * timestamp delta through its `BigInt`-backed `Long`, then copies each record
 * into the batch: about 1.0 core for 33 333 readings/s on this machine
 * (bench/RESULTS.md). Here a record costs no allocation of its own.
 *
 * Only the uncompressed body is written here; `kafka_lean_produce.ts` hands
 * kafkajs this encoder and leaves compressed requests to kafkajs.
 *
 * A message may also stand for many records of its partition (`RECORDS`, see
 * `recordSetMessage()` in kafka_lean_produce.ts): the records are written in
 * its place, in order, as if each had been a message without a timestamp or
 * headers. kafkajs then handles one message per partition and send instead of
 * one per record (its grouping by partition copies the partition's list for
 * every message: quadratic in the batch).
 *
 * @module
 */

/** The key of a message's record set: `keys[i]` and `values[i]` are its records, in order. */
export const RECORDS: unique symbol = Symbol("records");

/** Records of one partition that travel as one message. */
export interface RecordSet {
  readonly keys: readonly string[];
  readonly values: readonly string[];
}

/** A message as kafkajs's `producer.send()` takes it (after partitioning). */
export interface ProduceMessage {
  readonly key?: string | Uint8Array | null;
  readonly value: string | Uint8Array | null;
  readonly headers?: Readonly<
    Record<string, string | Uint8Array | readonly (string | Uint8Array)[] | null | undefined>
  >;
  /** Milliseconds since the epoch (kafkajs takes a string; a number works too). */
  readonly timestamp?: string | number | null;
  /** Records written in this message's place (its own key, value and headers are ignored). */
  readonly [RECORDS]?: RecordSet;
}

/** A 64-bit integer as kafkajs passes one: a number, a string, a bigint or its `Long`. */
export type Int64Like = number | string | bigint | { readonly value: bigint };

export interface ProduceRequestFields {
  readonly acks: number;
  readonly timeout: number;
  readonly transactionalId?: string | null;
  readonly producerId?: Int64Like;
  readonly producerEpoch?: number;
  readonly topicData: readonly {
    readonly topic: string;
    readonly partitions: readonly {
      readonly partition: number;
      readonly firstSequence?: number;
      readonly messages: readonly ProduceMessage[];
    }[];
  }[];
}

const MAGIC = 2;
const TRANSACTIONAL = 16;
const utf8 = new TextEncoder();

/** CRC-32C (Castagnoli), the checksum of a magic-2 record batch; `crc32c("123456789")` is 0xe3069283. */
export function crc32c(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let crc = -1;
  for (let i = start; i < end; i++) crc = CRC_TABLE[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

const CRC_TABLE = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/**
 * The Produce request body for `fields`, as kafkajs's `produce/v3/request.js` encodes it
 * uncompressed; `now` stands in for `Date.now()` (each partition's timestamp when its
 * messages carry none).
 */
export function encodeProduceRequest(
  fields: ProduceRequestFields,
  now: () => number = Date.now,
): Uint8Array {
  const {
    acks,
    timeout,
    transactionalId = null,
    producerId = -1,
    producerEpoch = 0,
    topicData,
  } = fields;
  const w = new ByteWriter(estimateSize(fields));
  w.nullableString(transactionalId);
  w.int16(acks);
  w.int32(timeout);
  w.int32(topicData.length);
  const pid = toBigInt(producerId);
  if (pid >= 0n && hasRecordSet(topicData)) {
    // kafkajs counts one sequence number per message: a record set would break them.
    throw new RecordSetError(
      `Record sets cannot be produced idempotently or in a transaction: producer id "${pid}"`,
    );
  }
  const attributes = transactionalId ? TRANSACTIONAL : 0;
  for (const { topic, partitions } of topicData) {
    w.nullableString(topic);
    w.int32(partitions.length);
    for (const { partition, firstSequence = 0, messages } of partitions) {
      w.int32(partition);
      const sizeAt = w.reserve(4);
      const batchStart = w.pos;
      writeRecordBatch(w, messages, {
        attributes,
        producerId: pid,
        producerEpoch,
        firstSequence,
        now: now(),
      });
      w.setInt32(sizeAt, w.pos - batchStart);
    }
  }
  return w.bytes();
}

/** A request this encoder cannot write as asked. */
export class RecordSetError extends Error {
  override readonly name = "RecordSetError";
}

/** True when a message of `topicData` carries a record set. */
export function hasRecordSet(topicData: ProduceRequestFields["topicData"]): boolean {
  for (const { partitions } of topicData) {
    for (const { messages } of partitions) {
      for (const m of messages) if (m[RECORDS] !== undefined) return true;
    }
  }
  return false;
}

function writeRecordBatch(
  w: ByteWriter,
  messages: readonly ProduceMessage[],
  batch: {
    attributes: number;
    producerId: bigint;
    producerEpoch: number;
    firstSequence: number;
    now: number;
  },
) {
  const { first, max } = timestampRange(messages, batch.now);
  const firstNumber = Number(first);
  w.int64(0n); // first offset: the broker assigns it
  const lengthAt = w.reserve(4);
  const afterLength = w.pos;
  w.int32(0); // partition leader epoch
  w.int8(MAGIC);
  const crcAt = w.reserve(4);
  const crcStart = w.pos;
  let records = 0;
  for (const m of messages) records += m[RECORDS]?.keys.length ?? 1;
  w.int16(batch.attributes);
  w.int32(records - 1); // last offset delta
  w.int64(first);
  w.int64(max);
  w.int64(batch.producerId);
  w.int16(batch.producerEpoch);
  w.int32(batch.firstSequence);
  w.int32(records);
  let offsetDelta = 0;
  const nowDelta = batch.now - firstNumber;
  for (const m of messages) {
    const set = m[RECORDS];
    if (set === undefined) {
      // kafkajs: (message.timestamp || dateNow) - firstTimestamp.
      const delta = m.timestamp ? Number(m.timestamp) - firstNumber : nowDelta;
      writeRecord(w, m.key, m.value, m.headers, delta, offsetDelta++);
      continue;
    }
    const { keys, values } = set;
    for (let i = 0; i < keys.length; i++) {
      writeRecord(w, keys[i]!, values[i]!, undefined, nowDelta, offsetDelta++);
    }
  }
  w.setInt32(lengthAt, w.pos - afterLength);
  w.setUint32(crcAt, crc32c(w.buf, crcStart, w.pos));
}

/**
 * A record: length, attributes, timestamp delta, offset delta, key, value, headers. The
 * length is a varint in front of the body: two bytes are reserved (a body of 64–8 191 bytes,
 * as a reading's is) and the body moves when it needs another size.
 */
function writeRecord(
  w: ByteWriter,
  key: ProduceMessage["key"],
  value: ProduceMessage["value"],
  headers: ProduceMessage["headers"],
  timestampDelta: number,
  offsetDelta: number,
) {
  w.ensure(recordBound(key, value, headers));
  const lengthAt = w.pos;
  w.pos += 2;
  const bodyStart = w.pos;
  w.buf[w.pos++] = 0; // attributes
  w.varlong(timestampDelta);
  w.varint(offsetDelta);
  w.varBytes(key);
  w.varBytes(value);
  if (headers === undefined || headers === null) {
    w.buf[w.pos++] = 0;
  } else {
    const pairs: [string, string | Uint8Array | null | undefined][] = [];
    for (const key of Object.keys(headers)) {
      const value = headers[key];
      if (Array.isArray(value)) { for (const v of value) pairs.push([key, v]); }
      else pairs.push([key, value as string | Uint8Array | null | undefined]);
    }
    w.varint(pairs.length);
    for (const [key, value] of pairs) {
      w.varBytes(key);
      w.varBytes(value);
    }
  }
  const bodyLength = w.pos - bodyStart;
  const lengthSize = varintSize(bodyLength);
  if (lengthSize !== 2) {
    w.ensure(lengthSize - 2);
    w.buf.copyWithin(lengthAt + lengthSize, bodyStart, w.pos);
    w.pos += lengthSize - 2;
  }
  const end = w.pos;
  w.pos = lengthAt;
  w.varint(bodyLength);
  w.pos = end;
}

/** Bytes a record can take at most (strings at 3 bytes per UTF-16 unit). */
function recordBound(
  key: ProduceMessage["key"],
  value: ProduceMessage["value"],
  headers: ProduceMessage["headers"],
): number {
  let n = 1 + 10 + 5 + 5 + 5 + bytesBound(key) + bytesBound(value) + 5;
  if (headers) {
    for (const name of Object.keys(headers)) {
      const v = headers[name];
      const values = Array.isArray(v) ? v : [v];
      for (const one of values) n += 10 + bytesBound(name) + bytesBound(one);
    }
  }
  return n;
}

function bytesBound(v: unknown): number {
  if (v === null || v === undefined) return 5;
  if (v instanceof Uint8Array) return 5 + v.length;
  return 5 + String(v).length * 3;
}

/** Sum of the bounds, so one buffer usually holds the whole request. */
function estimateSize(fields: ProduceRequestFields): number {
  let n = 64;
  for (const { topic, partitions } of fields.topicData) {
    n += 8 + topic.length * 3;
    for (const { messages } of partitions) {
      n += 80;
      for (const m of messages) {
        const set = m[RECORDS];
        if (set === undefined) n += 16 + approxLength(m.key) + approxLength(m.value);
        else {
          for (let i = 0; i < set.keys.length; i++) {
            n += 16 + set.keys[i]!.length + set.values[i]!.length;
          }
        }
      }
    }
  }
  return n;
}

function approxLength(v: unknown): number {
  if (v === null || v === undefined) return 0;
  if (v instanceof Uint8Array) return v.length;
  return typeof v === "string" ? v.length : 16;
}

/**
 * kafkajs's batch timestamps: the messages' own, sorted as strings (its `.sort()`), first and
 * last; `now` when none has one.
 */
function timestampRange(messages: readonly ProduceMessage[], now: number) {
  let any = false;
  for (const m of messages) {
    if (m.timestamp !== undefined && m.timestamp !== null) {
      any = true;
      break;
    }
  }
  if (!any) return { first: BigInt(now), max: BigInt(now) };
  const stamps = messages.map((m) => m.timestamp).filter((t) => t !== undefined && t !== null)
    .sort();
  return { first: toBigInt(stamps[0]!), max: toBigInt(stamps[stamps.length - 1]!) };
}

/** kafkajs's `Long.fromValue()`, as a bigint (NaN and infinities are 0 there too). */
function toBigInt(v: Int64Like): bigint {
  if (typeof v === "bigint") return v;
  if (typeof v === "number") return Number.isNaN(v) ? 0n : BigInt(v);
  if (typeof v === "string") {
    return v === "NaN" || v === "Infinity" || v === "+Infinity" || v === "-Infinity"
      ? 0n
      : BigInt(v);
  }
  return BigInt(v.value);
}

/** Bytes of the zigzag varint of a 32-bit `value`. */
function varintSize(value: number): number {
  let v = ((value << 1) ^ (value >> 31)) >>> 0;
  let n = 1;
  while (v >= 0x80) {
    v >>>= 7;
    n++;
  }
  return n;
}

/** A growable big-endian byte writer with Kafka's varints. */
class ByteWriter {
  buf: Uint8Array;
  #view: DataView;
  pos = 0;

  constructor(size: number) {
    this.buf = new Uint8Array(size);
    this.#view = new DataView(this.buf.buffer);
  }

  bytes(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }

  ensure(n: number) {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.#view = new DataView(next.buffer);
  }

  /** Skips `n` bytes to fill in later; returns where they start. */
  reserve(n: number): number {
    this.ensure(n);
    const at = this.pos;
    this.pos += n;
    return at;
  }

  int8(v: number) {
    this.ensure(1);
    this.#view.setInt8(this.pos, v);
    this.pos += 1;
  }

  int16(v: number) {
    this.ensure(2);
    this.#view.setInt16(this.pos, v);
    this.pos += 2;
  }

  int32(v: number) {
    this.ensure(4);
    this.#view.setInt32(this.pos, v);
    this.pos += 4;
  }

  int64(v: bigint) {
    this.ensure(8);
    this.#view.setBigInt64(this.pos, v);
    this.pos += 8;
  }

  setInt32(at: number, v: number) {
    this.#view.setInt32(at, v);
  }

  setUint32(at: number, v: number) {
    this.#view.setUint32(at, v);
  }

  /** A STRING (int16 length, UTF-8), or -1 for null. */
  nullableString(v: string | null) {
    if (v === null) return this.int16(-1);
    const bytes = utf8.encode(v);
    this.int16(bytes.length);
    this.ensure(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /** Zigzag varint of a 32-bit integer; the caller ensured 5 bytes. */
  varint(value: number) {
    let v = ((value << 1) ^ (value >> 31)) >>> 0;
    const buf = this.buf;
    while (v >= 0x80) {
      buf[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    buf[this.pos++] = v;
  }

  /** Zigzag varlong; the caller ensured 10 bytes. */
  varlong(value: number) {
    if (!Number.isSafeInteger(value) || Math.abs(value) > 2 ** 50) {
      return this.#bigVarlong(Number.isNaN(value) ? 0n : BigInt(Math.trunc(value)));
    }
    // Zigzag without 32-bit operators: 2v for v ≥ 0, −2v − 1 below.
    let v = value >= 0 ? value * 2 : -value * 2 - 1;
    const buf = this.buf;
    while (v >= 0x80) {
      buf[this.pos++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    buf[this.pos++] = v;
  }

  #bigVarlong(value: bigint) {
    let v = BigInt.asUintN(64, (value << 1n) ^ (value >> 63n));
    while (v >= 0x80n) {
      this.buf[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
  }

  /**
   * Varint length and bytes: raw bytes, or a string (anything else as kafkajs does: `String()`)
   * in UTF-8; null and undefined as length -1. The caller ensured the bound.
   */
  varBytes(v: string | Uint8Array | null | undefined) {
    if (v === null || v === undefined) {
      this.buf[this.pos++] = 1; // zigzag(-1)
      return;
    }
    if (v instanceof Uint8Array) {
      this.varint(v.length);
      this.buf.set(v, this.pos);
      this.pos += v.length;
      return;
    }
    const s = typeof v === "string" ? v : String(v);
    // Assume ASCII (one byte per unit, so the length is known before the bytes); else redo.
    const start = this.pos;
    this.varint(s.length);
    const buf = this.buf;
    let p = this.pos;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) {
        this.pos = start;
        return this.#utf8(s);
      }
      buf[p++] = c;
    }
    this.pos = p;
  }

  #utf8(s: string) {
    const bytes = utf8.encode(s);
    this.varint(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }
}
