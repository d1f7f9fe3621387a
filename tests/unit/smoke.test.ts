import { test } from "node:test";
import assert from "node:assert/strict";
import { FormatError, NixcasError } from "../../shared/errors.ts";

test("errors carry a stable code and their type", () => {
  const err = new FormatError("nar.magic", "not a NAR");
  assert.ok(err instanceof NixcasError);
  assert.equal(err.code, "nar.magic");
  assert.equal(err.name, "FormatError");
});
