// The one assertion the parsers' unit tests share: a call is refused with a FormatError of one
// exact code (a class alone would pass for the wrong refusal).
import assert from "node:assert/strict";
import { FormatError } from "../../shared/errors.ts";

export function assertFormatError(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => err instanceof FormatError && err.code === code, `expected ${code}`);
}
