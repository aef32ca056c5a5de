/**
 * The SSRF guard of webhook URLs: only http(s), and no host that is or resolves to a loopback,
 * private, link-local, unique-local, multicast, reserved or unspecified address
 * (`domain/network_address.ts`) unless it is in one of the networks the operator allowed
 * (`WEBHOOK_ALLOW_NETWORKS`). The API checks a URL when it is subscribed; the dispatcher again
 * before every attempt, since what a name resolves to can change.
 *
 * @module
 */
import type { WebhookTargetCheck } from "../actors/webhook_dispatcher.ts";
import {
  type Cidr,
  formatIp,
  type IpBytes,
  parseCidr,
  parseIp,
  refusalOf,
} from "../domain/network_address.ts";

/** The addresses a host name resolves to (A and AAAA), as text. */
export type Resolve = (host: string) => Promise<readonly string[]>;

/** Deno's resolver: both families; a family without records is no error. */
export const resolveDns: Resolve = async (host) => {
  const lookups = await Promise.allSettled([
    Deno.resolveDns(host, "A"),
    Deno.resolveDns(host, "AAAA"),
  ]);
  const found = lookups.flatMap((r) => r.status === "fulfilled" ? r.value : []);
  if (found.length === 0) {
    const failed = lookups.find((r) => r.status === "rejected");
    throw failed?.reason ?? new Error(`No address: "${host}"`);
  }
  return found;
};

export interface WebhookTargetOptions {
  /** Networks a webhook may reach although they are not public. */
  readonly allowed: readonly Cidr[];
  readonly resolve?: Resolve;
}

/** A check answering why a URL must not be called, or undefined when it may. */
export function webhookTargetCheck(
  { allowed, resolve = resolveDns }: WebhookTargetOptions,
): WebhookTargetCheck {
  return async function checkWebhookTarget(url: string): Promise<string | undefined> {
    if (!URL.canParse(url)) return `Invalid webhook URL: "${url}"`;
    const { protocol, hostname } = new URL(url);
    if (protocol !== "http:" && protocol !== "https:") {
      return `Webhook URL must be http or https: "${protocol}"`;
    }
    const host = hostname.endsWith(".") ? hostname.slice(0, -1) : hostname;
    const literal = parseIp(host);
    let addresses: IpBytes[];
    if (literal) {
      addresses = [literal];
    } else if (host === "localhost" || host.endsWith(".localhost")) {
      // Resolved from /etc/hosts by the system, never by DNS: always loopback (RFC 6761).
      addresses = [parseIp("127.0.0.1")!, parseIp("::1")!];
    } else {
      try {
        addresses = (await resolve(host)).map((a) => parseIp(a)).filter((a) => a !== null);
      } catch (error) {
        return `Webhook host does not resolve: "${host}": ${(error as Error).message}`;
      }
      if (addresses.length === 0) return `Webhook host does not resolve: "${host}"`;
    }
    for (const address of addresses) {
      const range = refusalOf(address, allowed);
      if (range !== undefined) {
        return `Webhook host "${host}" is a ${range} address (${formatIp(address)}); ` +
          "allow its network with WEBHOOK_ALLOW_NETWORKS to call it";
      }
    }
    return undefined;
  };
}

/** The check for the configured `WEBHOOK_ALLOW_NETWORKS` (validated by `parseConfig`). */
export function configuredTargetCheck(networks: readonly string[] | undefined): WebhookTargetCheck {
  const allowed = (networks ?? []).map((n) => parseCidr(n)).filter((n) => n !== null);
  return webhookTargetCheck({ allowed });
}
