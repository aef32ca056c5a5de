import assert from "node:assert/strict";
import { mergeRule, parseRulePatch, RuleAcceptedSchema } from "../schemas/rule_request.ts";
import { DEFAULT_RULE } from "../domain/hysteresis.ts";

Deno.test("parseRulePatch() takes any non-empty subset of the rule's fields", () => {
  assert.deepEqual(parseRulePatch({ high: 60 }), { ok: true, patch: { high: 60 } });
  const full = { high: 60, low: 50, raiseAfter: 3, clearAfter: 1 };
  assert.deepEqual(parseRulePatch(full), { ok: true, patch: full });
});

Deno.test("parseRulePatch() refuses an empty, unknown, out-of-range or non-object body", () => {
  const cases: [unknown, RegExp][] = [
    [{}, /name at least one of/],
    [undefined, /^Body must be a JSON object/],
    [[1], /^Body must be a JSON object/],
    [{ high: 201 }, /^high: /],
    [{ low: -101 }, /^low: /],
    [{ raiseAfter: 0 }, /^raiseAfter: /],
    [{ clearAfter: 2.5 }, /^clearAfter: /],
    [{ high: 60, thresholds: {} }, /thresholds/],
    [{ __proto__: null, constructor: 1 }, /^Forbidden key: "constructor"/],
  ];
  for (const [body, message] of cases) {
    const result = parseRulePatch(body);
    assert.equal(result.ok, false, JSON.stringify(body));
    assert.match(!result.ok ? result.message : "", message, JSON.stringify(body));
  }
});

Deno.test("mergeRule() validates the rule that would be in force, not the patch alone", () => {
  assert.deepEqual(mergeRule(DEFAULT_RULE, { high: 60, low: 50 }), {
    ok: true,
    rule: { ...DEFAULT_RULE, high: 60, low: 50 },
  });
  // Each valid alone; together with the current rule low would not be below high.
  const low = mergeRule(DEFAULT_RULE, { low: 85 });
  assert.match(!low.ok ? low.message : "", /low must be below high/);
  const high = mergeRule(DEFAULT_RULE, { high: 70 });
  assert.match(!high.ok ? high.message : "", /low must be below high/);
});

Deno.test("RuleAcceptedSchema describes the 202 answer, appliesAfterSeq known or not", () => {
  for (const appliesAfterSeq of [0, 412, null]) {
    const body = { id: "oven-1", rule: DEFAULT_RULE, appliesAfterSeq };
    assert.equal(RuleAcceptedSchema.safeParse(body).success, true);
  }
});
