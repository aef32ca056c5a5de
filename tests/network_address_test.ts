import assert from "node:assert/strict";
import {
  formatIp,
  inCidr,
  parseCidr,
  parseIp,
  refusalOf,
  restrictedRange,
} from "../domain/network_address.ts";
import { webhookTargetCheck } from "../adapters/webhook_target.ts";

/** How a URL's host is classified: through the URL parser, as the API and dispatcher see it. */
function rangeOfUrl(url: string): string | undefined {
  const ip = parseIp(new URL(url).hostname);
  assert.ok(ip, `an IP literal: ${url}`);
  return restrictedRange(ip);
}

Deno.test("restrictedRange() names loopback, private, link-local and other non-public IPv4", () => {
  const table: [string, string | undefined][] = [
    ["127.0.0.1", "loopback"],
    ["127.255.255.254", "loopback"],
    ["10.1.2.3", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["172.32.0.1", undefined],
    ["192.168.1.1", "private"],
    ["169.254.169.254", "link-local"],
    ["100.64.0.1", "carrier-grade NAT"],
    ["0.0.0.0", "unspecified"],
    ["224.0.0.1", "multicast"],
    ["255.255.255.255", "reserved"],
    ["8.8.8.8", undefined],
    ["93.184.216.34", undefined],
    ["11.0.0.1", undefined],
  ];
  for (const [ip, range] of table) assert.equal(restrictedRange(parseIp(ip)!), range, ip);
});

Deno.test("restrictedRange() names IPv6 loopback, unique-local, link-local and unspecified", () => {
  const table: [string, string | undefined][] = [
    ["::1", "loopback"],
    ["::", "unspecified"],
    ["fe80::1", "link-local"],
    ["fc00::1", "unique-local"],
    ["fd00:ec2::254", "unique-local"],
    ["ff02::1", "multicast"],
    ["2001:4860:4860::8888", undefined],
    ["2606:4700::1111", undefined],
  ];
  for (const [ip, range] of table) assert.equal(restrictedRange(parseIp(ip)!), range, ip);
});

Deno.test("restrictedRange() sees the IPv4 address inside mapped, compatible, NAT64 and 6to4 IPv6", () => {
  assert.equal(restrictedRange(parseIp("::ffff:127.0.0.1")!), "loopback (IPv4 inside IPv6)");
  assert.equal(restrictedRange(parseIp("::ffff:a9fe:a9fe")!), "link-local (IPv4 inside IPv6)");
  assert.equal(restrictedRange(parseIp("::10.0.0.1")!), "private (IPv4 inside IPv6)");
  assert.equal(restrictedRange(parseIp("64:ff9b::c0a8:1")!), "private (IPv4 inside IPv6)");
  assert.equal(restrictedRange(parseIp("2002:7f00:1::")!), "loopback (IPv4 inside IPv6)");
  assert.equal(restrictedRange(parseIp("::ffff:8.8.8.8")!), undefined);
  assert.equal(restrictedRange(parseIp("2002:808:808::")!), undefined);
});

Deno.test("URL hosts in decimal, octal, hex, short or mapped form are classified as the address they are", () => {
  for (
    const url of [
      "http://2130706433/",
      "http://0x7f.1/",
      "http://017700000001/",
      "http://0177.0.0.1/",
      "http://127.1/",
      "http://[::ffff:127.0.0.1]/",
      "http://[0:0:0:0:0:0:0:1]/",
    ]
  ) {
    assert.match(rangeOfUrl(url) ?? "public", /loopback/, url);
  }
  assert.equal(rangeOfUrl("http://0xa9.0xfe.0xa9.0xfe/latest/meta-data"), "link-local");
  assert.equal(rangeOfUrl("http://2852039166/"), "link-local");
});

Deno.test("parseIp() accepts only canonical text and refuses zones and junk", () => {
  for (
    const bad of ["1.2.3", "1.2.3.4.5", "01.2.3.4", "256.1.1.1", "1::2::3", "fe80::1%eth0", "x"]
  ) {
    assert.equal(parseIp(bad), null, bad);
  }
  assert.deepEqual([...parseIp("[::1]")!], [...new Array(15).fill(0), 1]);
  assert.equal(formatIp(parseIp("fd00:0:0:0:0:0:0:1")!), "fd00::1");
});

Deno.test("parseCidr() and inCidr() match networks, not across families", () => {
  const net = parseCidr("10.0.5.0/24")!;
  assert.ok(inCidr(parseIp("10.0.5.77")!, net));
  assert.ok(!inCidr(parseIp("10.0.6.1")!, net));
  assert.ok(!inCidr(parseIp("::ffff:10.0.5.77")!, net));
  assert.ok(inCidr(parseIp("fd12:3456::9")!, parseCidr("fd12::/16")!));
  assert.ok(inCidr(parseIp("1.2.3.4")!, parseCidr("0.0.0.0/0")!));
  assert.deepEqual(parseCidr("127.0.0.1"), { bytes: parseIp("127.0.0.1"), prefix: 32 });
  for (const bad of ["10.0.0.0/33", "10.0.0.0/x", "::/129", "10.0.0.0/8/1", ""]) {
    assert.equal(parseCidr(bad), null, bad);
  }
});

Deno.test("refusalOf() lets through exactly the allowed networks, mapped IPv4 included", () => {
  const allowed = [parseCidr("127.0.0.0/8")!];
  assert.equal(refusalOf(parseIp("127.0.0.1")!, allowed), undefined);
  assert.equal(refusalOf(parseIp("::ffff:127.0.0.1")!, allowed), undefined);
  assert.equal(refusalOf(parseIp("169.254.169.254")!, allowed), "link-local");
  assert.equal(refusalOf(parseIp("::1")!, allowed), "loopback");
});

Deno.test("webhookTargetCheck() refuses non-http schemes, private names and unresolvable hosts", async () => {
  const dns: Record<string, string[]> = {
    "public.example": ["93.184.216.34", "2606:2800:220:1::1"],
    "rebound.example": ["93.184.216.34", "10.0.0.7"],
    "metadata.example": ["169.254.169.254"],
  };
  const check = webhookTargetCheck({
    allowed: [parseCidr("192.168.7.0/24")!],
    resolve: (host) =>
      host in dns ? Promise.resolve(dns[host]!) : Promise.reject(new Error("NXDOMAIN")),
  });
  assert.equal(await check("https://public.example/hook"), undefined);
  assert.equal(await check("http://192.168.7.9:8080/hook"), undefined);
  assert.equal(await check("http://8.8.8.8/hook"), undefined);
  const refusals = {
    "ftp://public.example/": /http or https/,
    "http://rebound.example/": /"rebound.example" is a private address \(10\.0\.0\.7\)/,
    "http://metadata.example/": /link-local/,
    "http://169.254.169.254/latest/meta-data": /link-local/,
    "http://localhost:8080/": /loopback/,
    "http://api.localhost/": /loopback/,
    "http://[::1]/": /loopback/,
    "http://[fd00::1]/": /unique-local/,
    "http://0.0.0.0/": /unspecified/,
    "http://192.168.8.1/": /private/,
    "http://nowhere.example/": /does not resolve: "nowhere.example": NXDOMAIN/,
  };
  for (const [url, message] of Object.entries(refusals)) {
    assert.match((await check(url)) ?? "accepted", message, url);
  }
});
