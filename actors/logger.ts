/**
 * Port: structured logging as every component uses it. `adapters/log.ts`
 * implements it (JSON lines or pretty text on stderr).
 *
 * @module
 */

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line, e.g. `{ component: "kafka" }`. */
  child(fields: LogFields): Logger;
}
