// Properties of the gateway's parsers of request lines and headers: the request target
// (services/gateway/gateway.ts, parseTarget) and the Range header (services/gateway/
// manifest-stream.ts, parseRange). Anything a client sends gives a result or an HttpError with
// the documented status (400 for a target, 416 for a range), and a range that is returned lies
// inside the body.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { parseTarget } from "../../../services/gateway/gateway.ts";
import { HttpError } from "../../../services/gateway/http-errors.ts";
import { parseRange } from "../../../services/gateway/manifest-stream.ts";
import { mutatedText, parsedOrTyped, runs } from "./fuzz-helpers.ts";

/** The HttpError `parse` threw, or undefined when it returned `result`. */
function statusOf(parse: () => unknown): number | undefined {
  let status: number | undefined;
  parsedOrTyped(() => {
    try {
      return parse();
    } catch (err) {
      if (err instanceof HttpError) status = err.status;
      throw err;
    }
  }, HttpError);
  return status;
}

test("request targets: a path without NUL and a query, or a 400", () => {
  const target = fc.oneof(
    fc.string({ unit: "binary", maxLength: 80 }),
    fc.webUrl({ withQueryParameters: true, withFragments: true }),
    fc.webPath().chain((p) => mutatedText(`/${p}?a=1`)),
    fc.array(fc.constantFrom("/", "%", "%2", "%00", "%2F", "%e2%82%ac", "%ff", "?", "#", "a", "..", "\0"), { maxLength: 12 }).map((parts) => `/${parts.join("")}`),
  );
  fc.assert(
    fc.property(target, (t) => {
      let parsed: { path: string } | undefined;
      const status = statusOf(() => (parsed = parseTarget(t)));
      if (status !== undefined) assert.equal(status, 400);
      else assert.ok(!parsed!.path.includes("\0"));
    }),
    runs(600),
  );
});

test("Range headers: a range inside the body, null (ignored), or a 416", () => {
  const digits = fc.oneof(fc.constant(""), fc.nat({ max: 2000 }).map(String), fc.string({ unit: fc.constantFrom(..."0123456789"), minLength: 1, maxLength: 25 }));
  const header = fc.oneof(
    fc.tuple(digits, digits).map(([a, b]) => `bytes=${a}-${b}`),
    fc.tuple(digits, digits).chain(([a, b]) => mutatedText(`bytes=${a}-${b}`)),
    fc.string({ unit: "binary", maxLength: 40 }),
    fc.constant(undefined),
  );
  fc.assert(
    fc.property(header, fc.nat({ max: 5000 }), (h, size) => {
      let range: ReturnType<typeof parseRange> | undefined;
      const status = statusOf(() => (range = parseRange(h, size)));
      if (status !== undefined) assert.equal(status, 416);
      else if (range !== null) {
        assert.ok(Number.isSafeInteger(range!.start) && Number.isSafeInteger(range!.end), JSON.stringify(range));
        assert.ok(0 <= range!.start && range!.start <= range!.end && range!.end < size, `${JSON.stringify(range)} for size ${size}`);
      }
    }),
    runs(800),
  );
});
