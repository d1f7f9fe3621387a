// Properties of the narinfo parser and writer (shared/narinfo.ts): format → parse → format is
// the identity on canonical narinfos, field order and hash spelling do not matter, and arbitrary
// or mutated text is a FormatError or a narinfo that normalises to a fixed point.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { FormatError } from "../../../shared/errors.ts";
import { formatHash } from "../../../shared/hash.ts";
import { formatNarInfo, parseNarInfo } from "../../../shared/narinfo.ts";
import { assertTextRoundTrip, mutatedText, parsedOrTyped, runs } from "./fuzz-helpers.ts";
import { narInfo } from "./nix-arbitraries.ts";

test("narinfo: format → parse gives the narinfo back, and parse → format the text", () => {
  fc.assert(
    fc.property(narInfo, (info) => void assertTextRoundTrip(info, formatNarInfo, parseNarInfo)),
    runs(400),
  );
});

test("narinfo: the order of the lines and the spelling of the hashes do not change what is parsed", () => {
  const spelling = fc.constantFrom("nix32", "base16", "base64", "sri" as const);
  fc.assert(
    fc.property(narInfo, spelling, fc.nat(), (info, encoding, seed) => {
      const lines = formatNarInfo(info)
        .split("\n")
        .slice(0, -1)
        .map((line) => (line.startsWith("NarHash: ") ? `NarHash: ${formatHash(info.narHash, encoding)}` : line));
      // A deterministic shuffle of the lines, driven by the generated seed.
      let state = seed;
      for (let i = lines.length - 1; i > 0; i--) {
        state = (state * 1103515245 + 12345) >>> 0;
        const j = state % (i + 1);
        [lines[i], lines[j]] = [lines[j]!, lines[i]!];
      }
      // Unknown keys keep their relative order, which the shuffle may change: compare them as a set.
      const parsed = parseNarInfo(lines.join("\n") + "\n");
      const byKey = (a: [string, string], b: [string, string]) => (a[0] < b[0] ? -1 : 1);
      assert.deepEqual({ ...parsed, extra: [...parsed.extra].sort(byKey) }, { ...info, extra: [...info.extra].sort(byKey) });
    }),
    runs(300),
  );
});

/** Arbitrary text gives a FormatError, or a narinfo whose formatting parses to itself. */
function parsesToFixedPointOrFails(text: string): void {
  const parsed = parsedOrTyped(() => parseNarInfo(text), FormatError);
  if (parsed === undefined) return;
  const again = parseNarInfo(formatNarInfo(parsed));
  assert.deepEqual(again, parsed);
}

test("narinfo: arbitrary text is a FormatError", () => {
  const keyish = fc.constantFrom("StorePath", "URL", "Compression", "FileHash", "FileSize", "NarHash", "NarSize", "References", "Deriver", "System", "Sig", "CA", "X");
  const lines = fc.array(fc.tuple(keyish, fc.string({ unit: "binary", maxLength: 80 })).map(([k, v]) => `${k}: ${v}\n`), { maxLength: 14 }).map((ls) => ls.join(""));
  fc.assert(
    fc.property(fc.oneof(fc.string({ unit: "binary", maxLength: 400 }), lines), parsesToFixedPointOrFails),
    runs(800),
  );
});

test("narinfo: mutated valid narinfos are a FormatError or normalise to a fixed point", () => {
  fc.assert(
    fc.property(narInfo.chain((info) => mutatedText(formatNarInfo(info))), parsesToFixedPointOrFails),
    runs(1000),
  );
});
