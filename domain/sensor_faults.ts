/**
 * Faults a real sensor shows, laid over a simulated one at run time: a stuck
 * value, single-reading spikes, dropouts (silence), late delivery and repeated
 * readings. Pure functions over plain state; the sensor actor calls them
 * around each tick and the clock is passed in.
 *
 * Seqs stay honest (docs/seq-ledger.md): a dropout takes no seq (silence, not
 * a gap); a late reading keeps the seq and `ts` it was made with and is sent
 * after `by` later readings; a repeated reading is the same reading (seq and
 * content) sent again. Stuck and spike readings are ordinary readings with a
 * fresh seq and a wrong value.
 *
 * @module
 */
import type { Reading } from "../schemas/reading.ts";

/** Every fault kind, in the order a tick applies them. */
export const FAULT_KINDS = Object.freeze(
  ["dropout", "stuck", "spike", "late", "duplicate"] as const,
);
export type FaultKind = (typeof FAULT_KINDS)[number];

/** How long a fault lasts: a number of the sensor's ticks, or a span of its clock. */
export type FaultSpan = { readonly readings: number } | { readonly durationMs: number };

/** A fault as ordered, every default resolved (what travels as a fleet command). */
export type FaultOrder =
  | (
    & { readonly kind: "stuck"; readonly temperature?: number; readonly humidity?: number }
    & FaultSpan
  )
  | ({ readonly kind: "dropout" } & FaultSpan)
  | { readonly kind: "spike"; readonly count: number; readonly temperature: number }
  | { readonly kind: "late"; readonly readings: number; readonly by: number }
  | { readonly kind: "duplicate"; readonly readings: number; readonly copies: number };

/** A fault in effect on one sensor. */
export type ActiveFault =
  | {
    readonly kind: "stuck";
    readonly remaining: number | null;
    readonly untilMs: number | null;
    /** Latched from the first affected reading unless the order named them. */
    readonly temperature: number | null;
    readonly humidity: number | null;
  }
  | { readonly kind: "dropout"; readonly remaining: number | null; readonly untilMs: number | null }
  | {
    readonly kind: "spike";
    readonly remaining: number;
    readonly temperature: number;
    /** The previous reading was a spike: the next one is normal, so spikes never repeat. */
    readonly justSpiked: boolean;
  }
  | { readonly kind: "late"; readonly remaining: number; readonly by: number }
  | { readonly kind: "duplicate"; readonly remaining: number; readonly copies: number };

/** A reading held back by a late fault, and the later readings still to go before it. */
export interface HeldReading {
  readonly reading: Reading;
  /** Fresh readings still to be sent before this one. */
  readonly after: number;
  /** Extra copies to send with it (a duplicate fault in effect when it was held). */
  readonly copies: number;
}

/** Every fault of one sensor: at most one per kind, plus the readings held back. */
export interface FaultState {
  readonly faults: readonly ActiveFault[];
  readonly held: readonly HeldReading[];
}

/** A sensor without faults. */
export const NO_FAULTS: FaultState = Object.freeze({ faults: [], held: [] });

/** A fault as `GET /sensors/:id` shows it. */
export interface FaultInfo {
  readonly kind: FaultKind;
  /** Readings (ticks for a dropout; spikes for a spike) still affected; null for a duration. */
  readonly remaining: number | null;
  /** When a fault ordered for a duration ends (ISO-8601 UTC); null for a count. */
  readonly until: string | null;
  /** stuck: the value reported; spike: the spike's value. */
  readonly temperature?: number | null;
  readonly humidity?: number | null;
  /** late: readings each held reading waits for. */
  readonly by?: number;
  /** late: readings held back now. */
  readonly held?: number;
  /** duplicate: extra copies of each reading. */
  readonly copies?: number;
}

/** Adds a fault, replacing one of the same kind; `options.now` starts a duration. */
export function injectFault(
  state: FaultState,
  order: FaultOrder,
  options: { readonly now: number },
): FaultState {
  const { now } = options;
  const fault = activate(order, now);
  const faults = state.faults.filter((f) => f.kind !== order.kind);
  faults.push(fault);
  faults.sort((a, b) => FAULT_KINDS.indexOf(a.kind) - FAULT_KINDS.indexOf(b.kind));
  return { ...state, faults };
}

/**
 * Ends the faults of `kind` (every fault when undefined). Readings already
 * held back are still delivered late: their seqs were used.
 */
export function clearFaults(state: FaultState, kind?: FaultKind): FaultState {
  return {
    ...state,
    faults: kind === undefined ? [] : state.faults.filter((f) => f.kind !== kind),
  };
}

/** True when nothing is in effect or held: the sensor can drop its fault state. */
export function isIdle(state: FaultState): boolean {
  return state.faults.length === 0 && state.held.length === 0;
}

/**
 * Called before a tick takes a seq: whether a dropout silences it. Also ends
 * faults whose duration is over. A silenced tick takes no seq and sends
 * nothing, not even held readings (the link is down).
 */
export function gate(state: FaultState, now: number): { state: FaultState; silent: boolean } {
  let faults = state.faults.filter((f) => !expired(f, now));
  const dropout = faults.find((f) => f.kind === "dropout");
  if (!dropout) return { state: withFaults(state, faults), silent: false };
  faults = faults.flatMap((f) => {
    if (f !== dropout || f.remaining === null) return [f];
    return f.remaining > 1 ? [{ ...f, remaining: f.remaining - 1 }] : [];
  });
  return { state: { ...state, faults }, silent: true };
}

/**
 * What to send for a fresh reading, in order: the reading (possibly altered,
 * held back or repeated) and any held readings now due. Held readings wait
 * for `by` later fresh readings. `reading` is the fresh reading as altered.
 */
export function deliver(
  state: FaultState,
  reading: Reading,
): { state: FaultState; reading: Reading; send: readonly Reading[] } {
  let current = reading;
  let hold: HeldReading | undefined;
  let copies = 0;
  const faults: ActiveFault[] = [];
  for (const fault of state.faults) {
    switch (fault.kind) {
      case "dropout":
        faults.push(fault);
        break;
      case "stuck": {
        const temperature = fault.temperature ?? current.temperature;
        const humidity = fault.humidity ?? current.humidity;
        current = { ...current, temperature, humidity };
        const remaining = fault.remaining === null ? null : fault.remaining - 1;
        if (remaining === null || remaining > 0) {
          faults.push({ ...fault, remaining, temperature, humidity });
        }
        break;
      }
      case "spike": {
        if (fault.justSpiked) {
          faults.push({ ...fault, justSpiked: false });
          break;
        }
        current = { ...current, temperature: fault.temperature };
        if (fault.remaining > 1) {
          faults.push({ ...fault, remaining: fault.remaining - 1, justSpiked: true });
        }
        break;
      }
      case "late":
        hold = { reading: current, after: fault.by, copies: 0 };
        if (fault.remaining > 1) faults.push({ ...fault, remaining: fault.remaining - 1 });
        break;
      case "duplicate":
        // A held reading is repeated when it is finally sent.
        copies = fault.copies;
        if (fault.remaining > 1) faults.push({ ...fault, remaining: fault.remaining - 1 });
        break;
      default:
        fault satisfies never;
    }
  }
  const send: Reading[] = [];
  if (!hold) sendWithCopies(send, current, copies);
  // The reading just sent counts for those held before it; one held now waits from here.
  const held: HeldReading[] = [];
  for (const h of state.held) {
    if (hold) held.push(h);
    else if (h.after > 1) held.push({ ...h, after: h.after - 1 });
    else sendWithCopies(send, h.reading, h.copies);
  }
  if (hold) held.push({ ...hold, copies });
  return { state: { faults, held }, reading: current, send };
}

/** The faults in effect, for the sensor's status. */
export function describeFaults(state: FaultState): FaultInfo[] {
  const out: FaultInfo[] = state.faults.map((fault): FaultInfo => {
    switch (fault.kind) {
      case "stuck":
        return {
          kind: fault.kind,
          ...span(fault),
          temperature: fault.temperature,
          humidity: fault.humidity,
        };
      case "dropout":
        return { kind: fault.kind, ...span(fault) };
      case "spike":
        return {
          kind: fault.kind,
          remaining: fault.remaining,
          until: null,
          temperature: fault.temperature,
        };
      case "late":
        return {
          kind: fault.kind,
          remaining: fault.remaining,
          until: null,
          by: fault.by,
          held: state.held.length,
        };
      case "duplicate":
        return { kind: fault.kind, remaining: fault.remaining, until: null, copies: fault.copies };
      default:
        fault satisfies never;
        throw new TypeError(`Unknown fault kind: "${(fault as { kind: unknown }).kind}"`);
    }
  });
  // Readings still held after the late fault's own count ran out.
  if (state.held.length > 0 && !state.faults.some((f) => f.kind === "late")) {
    out.push({
      kind: "late",
      remaining: 0,
      until: null,
      by: Math.max(...state.held.map((h) => h.after)),
      held: state.held.length,
    });
  }
  return out;
}

function sendWithCopies(send: Reading[], reading: Reading, copies: number) {
  for (let i = 0; i <= copies; i++) send.push(reading);
}

function activate(order: FaultOrder, now: number): ActiveFault {
  switch (order.kind) {
    case "stuck":
      return {
        kind: "stuck",
        ...counted(order, now),
        temperature: order.temperature ?? null,
        humidity: order.humidity ?? null,
      };
    case "dropout":
      return { kind: "dropout", ...counted(order, now) };
    case "spike":
      return {
        kind: "spike",
        remaining: order.count,
        temperature: order.temperature,
        justSpiked: false,
      };
    case "late":
      return { kind: "late", remaining: order.readings, by: order.by };
    case "duplicate":
      return { kind: "duplicate", remaining: order.readings, copies: order.copies };
    default:
      order satisfies never;
      throw new TypeError(`Unknown fault kind: "${(order as { kind: unknown }).kind}"`);
  }
}

function counted(span: FaultSpan, now: number) {
  return "readings" in span
    ? { remaining: span.readings, untilMs: null }
    : { remaining: null, untilMs: now + span.durationMs };
}

function expired(fault: ActiveFault, now: number): boolean {
  return (fault.kind === "stuck" || fault.kind === "dropout") && fault.untilMs !== null &&
    now >= fault.untilMs;
}

function span(fault: { readonly remaining: number | null; readonly untilMs: number | null }) {
  return {
    remaining: fault.remaining,
    until: fault.untilMs === null ? null : new Date(fault.untilMs).toISOString(),
  };
}

function withFaults(state: FaultState, faults: readonly ActiveFault[]): FaultState {
  return faults.length === state.faults.length ? state : { ...state, faults };
}
