import assert from "node:assert/strict";
import { OVERHEAT_READINGS, parseOverheatRequest } from "../schemas/overheat_request.ts";

Deno.test("parseOverheatRequest() fills in the defaults for an empty body", () => {
  for (const body of [undefined, {}]) {
    assert.deepEqual(parseOverheatRequest(body), {
      ok: true,
      request: { readings: OVERHEAT_READINGS.fallback, temperature: undefined },
    });
  }
});

Deno.test("parseOverheatRequest() keeps the readings and temperature asked for", () => {
  assert.deepEqual(parseOverheatRequest({ readings: 4, temperature: 120.5 }), {
    ok: true,
    request: { readings: 4, temperature: 120.5 },
  });
});

Deno.test("parseOverheatRequest() rejects bad values, unknown and forbidden keys as data", () => {
  const cases: [unknown, RegExp][] = [
    [{ readings: 0 }, /^readings: /],
    [{ readings: 1001 }, /^readings: /],
    [{ readings: 2.5 }, /^readings: /],
    [{ temperature: 201 }, /^temperature: /],
    [{ temperature: "hot" }, /^temperature: /],
    [{ profile: "overheat" }, /profile/],
    [{ $set: { readings: 1 } }, /^Forbidden key: "\$set"$/],
    [[], /^value: /],
    ["10", /^value: /],
  ];
  for (const [body, message] of cases) {
    const result = parseOverheatRequest(body);
    assert.equal(result.ok, false, JSON.stringify(body));
    if (!result.ok) assert.match(result.message, message, JSON.stringify(body));
  }
});
