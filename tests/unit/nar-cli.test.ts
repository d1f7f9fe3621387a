import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VECTOR_DIR, writePseudoRandomFile, writeTree } from "../helpers/nar-trees.ts";

const CLI = join(import.meta.dirname, "../../cli/nixcas.ts");

interface Result {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs `nixcas …` with Node 24; `shell` pipes stdout through a shell command instead. */
function nixcas(args: string[], options: { input?: Uint8Array; shell?: string } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const argv = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(" ");
    const child = options.shell
      ? spawn("/bin/sh", ["-c", `${argv} | ${options.shell}`])
      : spawn(process.execPath, [CLI, ...args]);
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => (err += b));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }));
    child.stdin.end(options.input);
  });
}

test("nixcas nar dump / ls / errors / usage", async () => {
  const dir = await mkdtemp(join(tmpdir(), "nixcas-nar-cli-"));
  try {
    await writeTree(join(dir, "vec"), VECTOR_DIR.tree);
    const dumped = await nixcas(["nar", "dump", join(dir, "vec")]);
    assert.equal(dumped.code, 0, dumped.stderr);
    assert.deepEqual(new Uint8Array(dumped.stdout), VECTOR_DIR.nar);

    await writeFile(join(dir, "vec.nar"), VECTOR_DIR.nar);
    const listed = await nixcas(["nar", "ls", join(dir, "vec.nar")]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.equal(listed.stdout.toString(), VECTOR_DIR.ls);
    const fromStdin = await nixcas(["nar", "ls", "-"], { input: VECTOR_DIR.nar });
    assert.equal(fromStdin.stdout.toString(), VECTOR_DIR.ls);

    const broken = VECTOR_DIR.nar.slice();
    broken[235] = 1; // padding after the contents of "a"
    await writeFile(join(dir, "broken.nar"), broken);
    const bad = await nixcas(["nar", "ls", join(dir, "broken.nar")]);
    assert.equal(bad.code, 1);
    assert.equal(bad.stdout.length, 0);
    assert.match(bad.stderr, /broken\.nar: invalid NAR at byte 235 \(entry "\/a"\): non-zero padding byte 0x01/);

    const missing = await nixcas(["nar", "dump", join(dir, "nope")]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /ENOENT/);
    assert.doesNotMatch(missing.stderr, /internal error/);
    assert.equal((await nixcas(["nar", "ls", join(dir, "nope.nar")])).code, 1);

    for (const args of [["nar"], ["nar", "dump"], ["nar", "ls", "a", "b"], ["nar", "frobnicate"]]) {
      const r = await nixcas(args);
      assert.equal(r.code, 2, args.join(" "));
      assert.match(r.stderr, /usage: nixcas nar dump/);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("nixcas nar dump stops quietly when the reader goes away (EPIPE)", async () => {
  const dir = await mkdtemp(join(tmpdir(), "nixcas-nar-cli-"));
  try {
    await writePseudoRandomFile(join(dir, "big"), 64 << 20);
    await writeTree(join(dir, "tree"), { dir: { big: { pseudoRandom: 8 << 20 }, small: "x" } });
    for (const path of [join(dir, "big"), join(dir, "tree")]) {
      const r = await nixcas(["nar", "dump", path], { shell: "head -c 1000 | wc -c" });
      assert.equal(r.stdout.toString().trim(), "1000");
      assert.equal(r.stderr, "", r.stderr);
    }
    // The exit status of nixcas itself, with its stdout closed early.
    const status = await new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, [CLI, "nar", "dump", join(dir, "big")]);
      child.stdout.once("data", () => child.stdout.destroy());
      let err = "";
      child.stderr.on("data", (b) => (err += b));
      child.on("close", (code) => {
        assert.equal(err, "");
        resolve(code);
      });
    });
    assert.equal(status, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
