/**
 * `/rules`: `POST /rules/backtest` replays a window of stored readings through a candidate
 * rule and compares the episodes it would raise with the stored ones, within bounds.
 *
 * @module
 */
import { Hono } from "@hono/hono";
import { ApiError } from "../http_errors.ts";
import { available, jsonBody, limitBody } from "./helpers.ts";
import { parseBacktestRequest } from "../../schemas/backtest_request.ts";
import { type AlertDoc, alertId, type ReadingDoc } from "../../schemas/documents.ts";
import { backtest, type BacktestEpisode } from "../../domain/backtest.ts";
import type { StoreQueries } from "../../actors/store_queries.ts";

/** How much one backtest may do. */
export interface BacktestBounds {
  /** Most readings one backtest replays; a window holding more is refused. */
  readonly maxReadings: number;
  /** Most time one backtest may take, reading the store included. */
  readonly deadlineMs: number;
}

export const BACKTEST_BOUNDS: BacktestBounds = { maxReadings: 100_000, deadlineMs: 10_000 };

export interface RuleRoutesOptions {
  /** The store's queries; absent: every route answers 503. */
  readonly port: StoreQueries | undefined;
  /** The store is yet to be connected: the 503 says "not connected yet". */
  readonly connecting: boolean;
  readonly bounds: BacktestBounds;
}

/** The `/rules` sub-app. */
export function ruleRoutes({ port, connecting, bounds }: RuleRoutesOptions): Hono {
  const queries = () => available(port, "store", connecting);
  const narrow = "narrow the window (from, to) or name a deviceId";
  return new Hono()
    .post(
      "/backtest",
      limitBody(4096),
      async (c) => {
        const store = queries();
        const parsed = parseBacktestRequest(await jsonBody(c));
        if (!parsed.ok) throw new ApiError(400, "bad_request", parsed.message);
        const { deviceId, from, to, rule } = parsed.request;
        const signal = AbortSignal.timeout(bounds.deadlineMs);
        const overdue = () =>
          new ApiError(
            422,
            "limit_exceeded",
            `Backtest took longer than the deadline: the limit is ${bounds.deadlineMs} ms; ${narrow}`,
          );
        const window = { ...(deviceId === undefined ? {} : { deviceId }), from, to };
        let readings: readonly ReadingDoc[];
        let stored: readonly AlertDoc[];
        try {
          // One more than the bound tells a window at the bound from one past it.
          readings = await store.readingsBetween({
            ...window,
            limit: bounds.maxReadings + 1,
            signal,
          });
          if (readings.length > bounds.maxReadings) {
            throw new ApiError(
              422,
              "limit_exceeded",
              `Backtest window holds more readings than the limit of ${bounds.maxReadings}: ${narrow}`,
            );
          }
          // Every stored overheat episode of the window was raised by one of its readings.
          stored = await beforeAbort(
            store.alerts({
              ...(deviceId === undefined ? {} : { deviceId }),
              type: "overheat",
              raisedFrom: from,
              raisedTo: to,
              limit: bounds.maxReadings + 1,
            }),
            signal,
          );
        } catch (err) {
          if (signal.aborted && !(err instanceof ApiError)) throw overdue();
          throw err;
        }
        const result = backtest(
          readings.map((r) => ({
            deviceId: r.deviceId,
            seq: r.seq,
            ts: new Date(r.ts).toISOString(),
            temperature: r.temperature,
          })),
          rule,
        );
        if (signal.aborted) throw overdue();
        const candidate = result.episodes.map(episodeView);
        const storedEpisodes = [...stored].sort((a, b) =>
          a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : a.raisedSeq - b.raisedSeq
        );
        const byId = new Map(storedEpisodes.map((a) => [a._id, a]));
        const same = candidate.filter((e) => {
          const s = byId.get(e._id);
          return s !== undefined && s.clearedSeq === e.clearedSeq;
        }).length;
        return c.json({
          ...(deviceId === undefined ? {} : { deviceId }),
          from: from.toISOString(),
          to: to.toISOString(),
          rule,
          readings: result.readings,
          devices: result.devices,
          summary: { candidate: candidate.length, stored: storedEpisodes.length, same },
          candidate,
          stored: storedEpisodes,
        });
      },
    );
}

/** A backtest's episode in the stored alerts' shape, so both lists read alike. */
function episodeView(e: BacktestEpisode) {
  return {
    _id: alertId(e.deviceId, e.raisedSeq),
    deviceId: e.deviceId,
    type: "overheat",
    status: e.cleared ? "cleared" : "active",
    raisedAt: e.raisedAt,
    raisedSeq: e.raisedSeq,
    peakTemperature: e.peakTemperature,
    ...(e.cleared ? { clearedAt: e.cleared.ts, clearedSeq: e.cleared.seq } : {}),
  };
}

/** `promise`, unless `signal` aborts first: then its reason. */
function beforeAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  const { promise: aborted, reject } = Promise.withResolvers<never>();
  const onAbort = () => reject(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  return Promise.race([promise, aborted]).finally(() =>
    signal.removeEventListener("abort", onAbort)
  );
}
