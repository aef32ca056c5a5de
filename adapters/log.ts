/**
 * Structured logging: one JSON object per line on stderr (or a readable line
 * with `--log-format pretty`). Callers pass facts as fields, never secrets or
 * reading payloads.
 *
 * @module
 */
import type { LogFields, Logger } from "../actors/logger.ts";

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "json" | "pretty";
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface LoggerOptions {
  readonly level?: LogLevel;
  readonly format?: LogFormat;
  /** Where lines go; default stderr. Tests pass an array push. */
  readonly write?: (line: string) => void;
  readonly now?: () => Date;
}

export function createLogger(options: LoggerOptions = {}, base: LogFields = {}): Logger {
  const {
    level = "info",
    format = "json",
    write = (line: string) => console.error(line),
    now = () => new Date(),
  } = options;
  const emit = (lvl: LogLevel, msg: string, fields?: LogFields) => {
    if (RANK[lvl] < RANK[level]) return;
    const all = { ...base, ...fields };
    for (const [k, v] of Object.entries(all)) {
      // Stacks are for whoever turned on debug logging; at other levels the message says it.
      if (v instanceof Error) {
        all[k] = level === "debug" && v.stack
          ? { name: v.name, message: v.message, stack: v.stack }
          : { name: v.name, message: v.message };
      }
    }
    if (format === "json") {
      write(JSON.stringify({ time: now().toISOString(), level: lvl, msg, ...all }));
    } else {
      const extra = Object.entries(all).map(([k, v]) =>
        `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`
      );
      write(
        `${now().toISOString().slice(11, 23)} ${lvl.toUpperCase().padEnd(5)} ${msg}${
          extra.length ? "  " + extra.join(" ") : ""
        }`,
      );
    }
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (fields) => createLogger(options, { ...base, ...fields }),
  };
}

/** A logger that drops everything, for tests that do not inspect logs. */
export const silentLogger: Logger = createLogger({ write: () => {} });
