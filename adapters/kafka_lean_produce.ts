/**
 * Makes kafkajs encode uncompressed Produce requests with
 * `encodeProduceRequest()` (kafka_produce_encoding.ts), which writes the same
 * bytes without kafkajs's per-record `Buffer`s, varint arrays and `Long`s.
 * Everything else stays kafkajs's: partitioning, batching per broker, acks,
 * idempotence (producer id, epoch and sequences are passed through and written
 * as kafkajs writes them), retries, SASL/TLS, the response.
 *
 * kafkajs has no public hook for this. It looks its Produce request up on
 * every send, through the definitions object that
 * `src/protocol/requests/produce/index.js` exports (`broker.produce()` calls
 * `lookupRequest(apiKeys.Produce, requests.Produce)`, which calls its
 * `protocol({ version })`); this wraps that `protocol`. deno.json pins
 * kafkajs to 2.2.4, its last release; `tests/kafka_produce_encoding_test.ts`
 * checks the bytes against that version's own encoder and a broker round trip
 * through the hook, so an upgrade that moves the file fails there.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import produceDefinitions from "kafkajs/src/protocol/requests/produce/index.js";
import type { Message } from "kafkajs";
import {
  encodeProduceRequest,
  hasRecordSet,
  type ProduceRequestFields,
  RECORDS,
  RecordSetError,
} from "./kafka_produce_encoding.ts";

/** What kafkajs's Produce request factory takes (versions 3–7). */
interface ProduceArgs extends ProduceRequestFields {
  readonly compression?: number;
}

interface KafkajsRequest {
  readonly apiVersion: number;
  encode(): Promise<unknown>;
}

interface ProduceDefinitions {
  readonly versions: readonly string[];
  protocol(options: { version: number }): (args: ProduceArgs) => {
    request: KafkajsRequest;
    response: unknown;
  };
}

/** The request layout this encoder writes: versions 3 to 7 (kafkajs's newest) share it. */
const FIRST_VERSION = 3;
const LAST_VERSION = 7;
/** kafkajs's `CompressionTypes.None`. */
const NO_COMPRESSION = 0;

let installed = false;
let encoded = 0;

/**
 * Installs the lean encoder into kafkajs for the whole process (every client and producer).
 * Idempotent; `createKafka()` calls it.
 */
export function useLeanProduceEncoding(): void {
  if (installed) return;
  const definitions = produceDefinitions as ProduceDefinitions;
  const versions = definitions.versions.map(Number);
  if (!versions.includes(LAST_VERSION)) {
    // Not the kafkajs this was written against: keep its own encoder.
    return;
  }
  installed = true;
  const protocol = definitions.protocol;
  definitions.protocol = (options) => {
    const build = protocol(options);
    const ours = options.version >= FIRST_VERSION && options.version <= LAST_VERSION;
    return (args) => {
      const built = build(args);
      // kafkajs compresses the encoded records; leave that path entirely to it.
      if (!ours || (args.compression ?? NO_COMPRESSION) !== NO_COMPRESSION) {
        // kafkajs would write a record set as one empty record: refuse rather than lose them.
        if (hasRecordSet(args.topicData)) {
          throw new RecordSetError(
            `Record sets need an uncompressed Produce request of version ${FIRST_VERSION}–` +
              `${LAST_VERSION}: version "${options.version}", compression "${args.compression}"`,
          );
        }
        return built;
      }
      const encode = () => {
        encoded++;
        return Promise.resolve(asKafkajsEncoder(encodeProduceRequest(args)));
      };
      return { ...built, request: { ...built.request, encode } };
    };
  };
}

/** True once kafkajs encodes through this module (false if its Produce request was not found). */
export function leanProduceInstalled(): boolean {
  return installed;
}

/**
 * One kafkajs message standing for the records `keys[i]` → `values[i]` of `partition`, in
 * order (see kafka_produce_encoding.ts). For a producer that is neither idempotent nor
 * transactional (kafkajs counts their sequences per message) and uses no compression; both
 * are refused at send time. Needs the lean encoder installed.
 */
export function recordSetMessage(
  partition: number,
  keys: readonly string[],
  values: readonly string[],
): Message {
  if (!installed) throw new RecordSetError("Record sets need the lean Produce encoder installed");
  // kafkajs checks that a message has a value; this one's records are in RECORDS.
  return { partition, value: "", [RECORDS]: { keys, values } } as Message;
}

/** Produce requests encoded here since the process started (tests check the hook is used). */
export function leanProduceRequests(): number {
  return encoded;
}

/**
 * The request framing (`src/protocol/request.js`) copies `encode()`'s result with
 * `writeEncoder()`, which only reads `buf` (a Buffer) and `buffer`; `size()` for good measure.
 */
function asKafkajsEncoder(bytes: Uint8Array) {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { buf, buffer: buf, offset: buf.length, size: () => buf.length };
}
