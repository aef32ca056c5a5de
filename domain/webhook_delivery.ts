/**
 * The pure parts of webhook delivery: how long to wait before the next
 * attempt (exponential backoff with full jitter) and the signature of a body.
 *
 * @module
 */

export interface BackoffOptions {
  /** The ceiling of the first retry's wait. */
  readonly baseMs: number;
  /** No wait is longer than this. */
  readonly capMs: number;
}

/**
 * The wait before retrying after `failures` failed attempts (1 for the first failure): uniform in
 * `[0, min(cap, base × 2^(failures − 1))]` ("full jitter"), so receivers coming back are not hit
 * by every sender at once. `random` returns a number in `[0, 1)`.
 */
export function backoffDelayMs(
  failures: number,
  { baseMs, capMs }: BackoffOptions,
  random: () => number = Math.random,
): number {
  if (!Number.isInteger(failures) || failures < 1) {
    throw new RangeError(`Invalid failure count: ${failures} must be a positive integer`);
  }
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(failures - 1, 52));
  return Math.floor(random() * (ceiling + 1));
}

/** `sha256=<hex HMAC-SHA256 of body keyed with secret>`: the `X-Signature-256` header. */
export async function signatureOf(secret: string, body: string): Promise<string> {
  const encoder = new TextEncoder();
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(body)));
  return `sha256=${Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
