// Properties of the realisation check (services/gateway/realisations.ts, checkRealisation):
// a valid realisation of either scheme is accepted with its outPath; arbitrary bytes, arbitrary
// JSON and mutated realisations are accepted or refused with a 400 HttpError, nothing else.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { HttpError } from "../../../services/gateway/http-errors.ts";
import { checkRealisation, type Target } from "../../../services/gateway/realisations.ts";
import { mutatedText, parsedOrTyped, runs } from "./fuzz-helpers.ts";
import { baseName, drvBaseName, signature } from "./nix-arbitraries.ts";

const outputName = fc.string({ unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789+-._?="), minLength: 1, maxLength: 12 });
const drvOutputId = fc
  .tuple(fc.uint8Array({ minLength: 32, maxLength: 32 }), outputName)
  .map(([digest, output]) => `sha256:${Buffer.from(digest).toString("hex")}!${output}`);

const target: fc.Arbitrary<Target> = fc.oneof(
  drvOutputId.map((id): Target => ({ scheme: "doi", key: id, url: `realisations/${id}.doi`, id })),
  fc.tuple(drvBaseName, outputName).map(([drv, output]): Target => ({ scheme: "build-trace-v2", key: `build-trace-v2/${drv}/${output}`, url: `build-trace-v2/${drv}/${output}.doi` })),
);

/** A realisation as Nix writes it for the target's scheme. */
const realisation: fc.Arbitrary<[Target, Record<string, unknown>]> = target.chain((t) =>
  fc.tuple(
    fc.constant(t),
    t.scheme === "doi"
      ? fc.record(
          { id: fc.constant(t.id!), outPath: baseName, signatures: fc.array(signature, { maxLength: 2 }), dependentRealisations: fc.dictionary(drvOutputId, baseName, { maxKeys: 2 }) },
          { requiredKeys: ["id", "outPath"], noNullPrototype: true },
        )
      : fc.record(
          { outPath: baseName, signatures: fc.array(signature.map((s) => ({ keyName: s.slice(0, s.indexOf(":")), sig: s.slice(s.indexOf(":") + 1) })), { maxLength: 2 }) },
          { requiredKeys: ["outPath"], noNullPrototype: true },
        ),
  ),
);

const utf8 = new TextEncoder();

/** checkRealisation accepts the body (an outPath string) or refuses it with a 400 HttpError. */
function check(t: Target, body: Uint8Array): void {
  let error: unknown;
  const outPath = parsedOrTyped(() => {
    try {
      return checkRealisation(t, body);
    } catch (err) {
      error = err;
      throw err;
    }
  }, HttpError);
  if (outPath === undefined) assert.equal((error as HttpError).status, 400);
  else assert.equal(typeof outPath, "string");
}

test("realisations: a valid realisation of either scheme is accepted with its outPath", () => {
  fc.assert(
    fc.property(realisation, ([t, r]) => {
      assert.equal(checkRealisation(t, utf8.encode(JSON.stringify(r))), r.outPath);
    }),
    runs(300),
  );
});

test("realisations: arbitrary bytes and arbitrary JSON are accepted or a 400", () => {
  const body = fc.oneof(
    fc.uint8Array({ maxLength: 200 }),
    fc.jsonValue({ maxDepth: 4 }).map((v) => utf8.encode(JSON.stringify(v))),
    // The known fields, each with an arbitrary value.
    fc.record({ id: fc.jsonValue({ maxDepth: 2 }), outPath: fc.oneof(baseName, fc.jsonValue({ maxDepth: 2 })), signatures: fc.jsonValue({ maxDepth: 3 }), dependentRealisations: fc.jsonValue({ maxDepth: 3 }) }, { requiredKeys: [] }).map((v) => utf8.encode(JSON.stringify(v))),
  );
  fc.assert(fc.property(target, body, check), runs(600));
});

test("realisations: mutated valid realisations are accepted or a 400", () => {
  const mutated = realisation.chain(([t, r]) => fc.tuple(fc.constant(t), mutatedText(JSON.stringify(r))));
  fc.assert(fc.property(mutated, ([t, text]) => check(t, utf8.encode(text))), runs(600));
});
