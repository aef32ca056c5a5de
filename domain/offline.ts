/**
 * The offline rule, in event time: a device is offline once no reading of it
 * arrived for more than its `offlineAfterMs` after its last one. Pure — no
 * I/O, no clock reads: the readings' own `ts` and a partition's watermark are
 * the clock, so a replay after a crash finds the same episodes.
 *
 * An episode is defined by the readings alone: it starts at the silent
 * device's last reading `ts + offlineAfterMs` (its id is that reading's seq)
 * and ends at the next reading. The watermark only decides *when* an open
 * episode is noticed, never what it contains (docs/offline.md).
 *
 * @module
 */

/** Bounds of `offlineAfterMs` wherever it is set (config, sensor spec, reading). */
export const OFFLINE_AFTER_RANGE = { min: 100, max: 7 * 86_400_000 } as const;

/** How many intervals of silence make a device offline when nothing else is set. */
export const OFFLINE_INTERVALS = 3;

/** The offline limit of a device that has no explicit one: 3 × its interval, within the range. */
export function defaultOfflineAfterMs(intervalMs: number): number {
  const { min, max } = OFFLINE_AFTER_RANGE;
  return Math.max(min, Math.min(max, OFFLINE_INTERVALS * intervalMs));
}

/** What the rule needs of a reading: its seq and `ts` (ISO-8601). */
export interface Seen {
  readonly seq: number;
  readonly ts: string;
}

/** An offline episode: open (no `cleared`) or closed by the device's next reading. */
export interface OfflineEpisode {
  /** seq of the last reading before the silence: the episode's id. */
  readonly raisedSeq: number;
  /** When the device became offline: its last reading's `ts` + `offlineAfterMs` (ISO-8601). */
  readonly raisedAt: string;
  /** `ts` of the last reading before the silence. */
  readonly lastSeenAt: string;
  readonly offlineAfterMs: number;
  readonly cleared?: Seen;
}

/** The moment (epoch ms) a device last seen at `lastTs` becomes offline. */
export function offlineAt(lastTs: string, offlineAfterMs: number): number {
  return Date.parse(lastTs) + offlineAfterMs;
}

/**
 * The closed episode between two consecutive applied readings of a device, or
 * null when `next` came within `offlineAfterMs` of `prev` (or before it).
 */
export function offlineGap(
  prev: Seen | null,
  next: Seen,
  offlineAfterMs: number,
): OfflineEpisode | null {
  if (prev === null) return null;
  const since = offlineAt(prev.ts, offlineAfterMs);
  if (!(Date.parse(next.ts) > since)) return null;
  return {
    raisedSeq: prev.seq,
    raisedAt: new Date(since).toISOString(),
    lastSeenAt: prev.ts,
    offlineAfterMs,
    cleared: { seq: next.seq, ts: next.ts },
  };
}

/**
 * The open episode of a device last seen as `last`, when the watermark says
 * every reading up to its offline moment has been seen; else null.
 */
export function openEpisode(
  last: Seen,
  offlineAfterMs: number,
  watermarkMs: number,
): OfflineEpisode | null {
  const since = offlineAt(last.ts, offlineAfterMs);
  if (!(watermarkMs >= since)) return null;
  return {
    raisedSeq: last.seq,
    raisedAt: new Date(since).toISOString(),
    lastSeenAt: last.ts,
    offlineAfterMs,
  };
}

/**
 * A partition's event-time progress: the latest reading `ts` consumed (or
 * reached while idle, see {@linkcode observeCaughtUp}) and when, on the
 * processors' clock, it was. Only ever moves forward.
 */
export interface PartitionClock {
  readonly maxEventMs: number | null;
  /** Processors' clock when `maxEventMs` was reached. */
  readonly seenMs: number | null;
}

/** A partition nothing is known of yet. */
export const INITIAL_PARTITION_CLOCK: PartitionClock = { maxEventMs: null, seenMs: null };

/** The clock after consuming, at `atMs` on the processors' clock, a reading stamped `tsMs`. */
export function observeEvent(clock: PartitionClock, tsMs: number, atMs: number): PartitionClock {
  if (!Number.isFinite(tsMs) || (clock.maxEventMs !== null && tsMs <= clock.maxEventMs)) {
    return clock;
  }
  return { maxEventMs: tsMs, seenMs: atMs };
}

/**
 * The clock after the partition was found caught up at `atMs` (read before
 * asking the source). Like an idle source in Flink, time then stands in for
 * readings that do not come: event time advances from the latest reading by
 * the time elapsed since it was consumed — not to the processors' clock, so
 * sensors whose clocks run behind (or backdated readings) do not all look
 * silent at once. Nothing moves before a first reading.
 */
export function observeCaughtUp(clock: PartitionClock, atMs: number): PartitionClock {
  const { maxEventMs, seenMs } = clock;
  if (maxEventMs === null || seenMs === null || atMs <= seenMs) return clock;
  return { maxEventMs: maxEventMs + (atMs - seenMs), seenMs: atMs };
}

/**
 * The partition's watermark: every reading stamped at or before it has been
 * consumed, allowing `graceMs` for readings that overtake each other between
 * sensors and the topic (bounded out-of-orderness). -Infinity when unknown.
 */
export function watermarkOf(clock: PartitionClock, graceMs: number): number {
  return clock.maxEventMs === null ? -Infinity : clock.maxEventMs - graceMs;
}

/**
 * The clock of a caught-up partition resumed after a restart or a rebalance: at least the
 * latest reading `ts` of the stored states of its devices (`resumedMs`), which were consumed
 * before it was assigned — so a partition that went quiet before the restart still has a clock.
 * Taken as reached now (`atMs`): that only ever delays detection.
 */
export function observeResumed(
  clock: PartitionClock,
  resumedMs: number,
  atMs: number,
): PartitionClock {
  if (!Number.isFinite(resumedMs)) return clock;
  if (clock.maxEventMs !== null && clock.maxEventMs >= resumedMs) return clock;
  return { maxEventMs: resumedMs, seenMs: atMs };
}
