/**
 * IP addresses a webhook must not reach unless an operator allows them (SSRF): loopback,
 * private, carrier-grade NAT, link-local (the cloud metadata address 169.254.169.254 among
 * them), unique-local, multicast, reserved and unspecified ones, also when written as an
 * IPv4-mapped, IPv4-compatible, NAT64 or 6to4 IPv6 address. Pure: resolving names is the
 * caller's job (`adapters/webhook_target.ts`).
 *
 * The WHATWG URL parser already turns `http://2130706433/`, `http://0x7f.1/` and
 * `http://0177.0.0.1/` into `127.0.0.1`, so {@linkcode parseIp} accepts only the canonical forms
 * (dotted decimal, RFC 4291 text) and classifies what a URL's `hostname` holds.
 *
 * @module
 */

/** An IPv4 (4 bytes) or IPv6 (16 bytes) address. */
export type IpBytes = Uint8Array;

/** A network: an address and how many leading bits count. */
export interface Cidr {
  readonly bytes: IpBytes;
  readonly prefix: number;
}

/** The bytes of a dotted-decimal IPv4 or RFC 4291 IPv6 address (brackets allowed), else null. */
export function parseIp(text: string): IpBytes | null {
  const bare = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  return bare.includes(":") ? parseIpv6(bare) : parseIpv4(bare);
}

function parseIpv4(text: string): IpBytes | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (const [i, part] of parts.entries()) {
    if (!/^(0|[1-9]\d{0,2})$/.test(part) || Number(part) > 255) return null;
    out[i] = Number(part);
  }
  return out;
}

function parseIpv6(text: string): IpBytes | null {
  if (text.includes("%")) return null; // Zone ids name an interface: never a webhook target.
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groups = (half: string): number[] | null => {
    if (half === "") return [];
    const out: number[] = [];
    const parts = half.split(":");
    for (const [i, part] of parts.entries()) {
      if (i === parts.length - 1 && part.includes(".")) {
        const v4 = parseIpv4(part);
        if (!v4) return null;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9a-f]{1,4}$/i.test(part)) {
        out.push(parseInt(part, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/** `a.b.c.d/n` or `x::y/n`; a bare address is a network of one. Null when malformed. */
export function parseCidr(text: string): Cidr | null {
  const [address, prefixText, ...rest] = text.trim().split("/");
  if (rest.length > 0 || address === undefined) return null;
  const bytes = parseIp(address);
  if (!bytes) return null;
  const bits = bytes.length * 8;
  if (prefixText === undefined) return { bytes, prefix: bits };
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > bits) return null;
  return { bytes, prefix: Number(prefixText) };
}

/** Whether `ip` is in `network` (an IPv4 address never matches an IPv6 network, and back). */
export function inCidr(ip: IpBytes, network: Cidr): boolean {
  if (ip.length !== network.bytes.length) return false;
  for (let bit = 0; bit < network.prefix; bit += 8) {
    const take = Math.min(8, network.prefix - bit);
    const mask = (0xff << (8 - take)) & 0xff;
    if ((ip[bit / 8]! & mask) !== (network.bytes[bit / 8]! & mask)) return false;
  }
  return true;
}

const V4_RANGES: readonly (readonly [string, string])[] = [
  ["0.0.0.0/8", "unspecified"],
  ["10.0.0.0/8", "private"],
  ["100.64.0.0/10", "carrier-grade NAT"],
  ["127.0.0.0/8", "loopback"],
  ["169.254.0.0/16", "link-local"],
  ["172.16.0.0/12", "private"],
  ["192.0.0.0/24", "IETF protocol assignments"],
  ["192.168.0.0/16", "private"],
  ["198.18.0.0/15", "benchmarking"],
  ["224.0.0.0/4", "multicast"],
  ["240.0.0.0/4", "reserved"],
];

const V6_RANGES: readonly (readonly [string, string])[] = [
  ["::/128", "unspecified"],
  ["::1/128", "loopback"],
  ["fe80::/10", "link-local"],
  ["fec0::/10", "site-local"],
  ["fc00::/7", "unique-local"],
  ["ff00::/8", "multicast"],
  ["100::/64", "discard-only"],
];

/** IPv6 ranges that carry an IPv4 address: classified by that address. */
const V6_EMBEDDING: readonly (readonly [string, number])[] = [
  ["::ffff:0:0/96", 12], // IPv4-mapped
  ["::/96", 12], // IPv4-compatible (deprecated), after ::/128 and ::1/128 above
  ["64:ff9b::/96", 12], // NAT64
  ["2002::/16", 2], // 6to4
];

const parsedRanges = (ranges: readonly (readonly [string, string])[]) =>
  ranges.map(([cidr, name]) => [parseCidr(cidr)!, name] as const);
const V4 = parsedRanges(V4_RANGES);
const V6 = parsedRanges(V6_RANGES);
const EMBEDDING = V6_EMBEDDING.map(([cidr, at]) => [parseCidr(cidr)!, at] as const);

/**
 * The kind of non-public range `ip` is in ("loopback", "private", "link-local", …), or
 * undefined for an address a webhook may reach.
 */
export function restrictedRange(ip: IpBytes): string | undefined {
  if (ip.length === 4) return V4.find(([net]) => inCidr(ip, net))?.[1];
  const own = V6.find(([net]) => inCidr(ip, net))?.[1];
  if (own) return own;
  for (const [net, at] of EMBEDDING) {
    if (!inCidr(ip, net)) continue;
    const inner = restrictedRange(ip.slice(at, at + 4));
    if (inner) return `${inner} (IPv4 inside IPv6)`;
  }
  return undefined;
}

/** Why a webhook must not reach `ip` given the operator's `allowed` networks, else undefined. */
export function refusalOf(ip: IpBytes, allowed: readonly Cidr[]): string | undefined {
  const range = restrictedRange(ip);
  if (range === undefined) return undefined;
  if (allowed.some((net) => inCidr(ip, net) || inCidr(unmapped(ip), net))) return undefined;
  return range;
}

/** An IPv4-mapped IPv6 address as its IPv4 address; any other as it is. */
function unmapped(ip: IpBytes): IpBytes {
  return ip.length === 16 && inCidr(ip, EMBEDDING[0]![0]) ? ip.slice(12) : ip;
}

/** The text form of an address, for messages. */
export function formatIp(ip: IpBytes): string {
  if (ip.length === 4) return ip.join(".");
  const groups = [];
  for (let i = 0; i < 16; i += 2) groups.push(((ip[i]! << 8) | ip[i + 1]!).toString(16));
  return groups.join(":").replace(/(^|:)0(:0)+(:|$)/, "::");
}
