// .drv files written by the real Nix (nix-instantiate into a chroot store) parse, format back
// byte for byte, agree with Nix's own reading of them (nix show-derivation), and become
// Derivation nodes whose inputDrvs links let the build graph be walked by CID.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { CID } from "multiformats/cid";
import { makeNixEnv, type NixEnv } from "../helpers/nix.ts";
import {
  decodeDerivation,
  derivationFromNode,
  derivationNameFromPath,
  formatDerivation,
  parseDerivation,
  toDerivationNode,
  type ParsedDerivation,
} from "../../shared/derivation.ts";
import type { EncodedBlock } from "../../shared/block.ts";

const EXPR = String.raw`
let
  mk = name: attrs: derivation ({ inherit name; system = "x86_64-linux"; builder = "/bin/sh"; } // attrs);
in rec {
  plain = mk "plain" { args = [ "-c" "echo hi > $out" ]; };
  dep = mk "dep" { args = [ "-c" "cat ${"$"}{plain} > $out" ]; };
  escapes = mk "escapes" {
    args = [ "-c" "printf '%s\\n' \"$weird\" > $out" ];
    weird = "double \" quote, back\\slash, \\\" both, new\nline, tab\there, cr\rhere, dollar $ ünï 😀 end\\";
    "key with spaces" = "x";
  };
  multi = mk "multi" { outputs = [ "out" "dev" ]; args = [ "-c" "echo > $out; echo > $dev" ]; };
  fixed = mk "fixed" {
    args = [ "-c" "printf hi > $out" ];
    outputHashMode = "flat"; outputHashAlgo = "sha256";
    outputHash = "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4";
  };
  withsrc = mk "withsrc" { args = [ ./src.sh ]; };
  top = mk "top" { args = [ "-c" "cat ${"$"}{dep} ${"$"}{multi.dev} ${"$"}{fixed} > $out" ]; };
  ca = mk "ca" { args = [ "-c" "echo hi > $out" ]; __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; };
  deferred = mk "deferred" { args = [ "-c" "cat ${"$"}{ca} > $out" ]; };
}
`.replaceAll('${"$"}{', "${");

const ATTRS = ["plain", "dep", "escapes", "multi", "fixed", "withsrc", "top", "ca", "deferred"] as const;

let env: NixEnv;
let storeRoot: string;
const drvPath: Record<string, string> = {};
const text: Record<string, string> = {};

before(async () => {
  env = await makeNixEnv();
  storeRoot = env.store("x");
  await writeFile(join(env.dir, "default.nix"), EXPR);
  await writeFile(join(env.dir, "src.sh"), "echo from source > $out\n");
  const out = await env.run("nix-instantiate", ["--store", storeRoot, join(env.dir, "default.nix"), ...ATTRS.flatMap((a) => ["-A", a])]);
  const paths = out.trim().split("\n");
  assert.equal(paths.length, ATTRS.length, out);
  ATTRS.forEach((attr, i) => (drvPath[attr] = paths[i]!));
  for (const attr of ATTRS) {
    // The logical path is /nix/store/…; the file is under the chroot.
    text[attr] = await readFile(join(storeRoot, drvPath[attr]!), "utf8");
  }
});

after(async () => {
  await env?.cleanup();
});

function parse(attr: string): ParsedDerivation {
  return parseDerivation(text[attr]!, { name: derivationNameFromPath(drvPath[attr]!) });
}

test("every .drv Nix wrote parses and formats back byte-identical", async () => {
  for (const attr of ATTRS) {
    const parsed = parse(attr);
    assert.equal(parsed.name, attr);
    assert.equal(formatDerivation(parsed), text[attr], attr);
    // The bytes path gives the same.
    const bytes = await readFile(join(storeRoot, drvPath[attr]!));
    assert.equal(formatDerivation(parseDerivation(bytes)), text[attr]);
  }
});

test("the parse agrees with Nix's own reading (nix show-derivation)", async () => {
  const json = JSON.parse(
    await env.run("nix", ["show-derivation", "--store", storeRoot, ...ATTRS.map((a) => drvPath[a]!)]),
  ) as Record<string, any>;
  for (const attr of ATTRS) {
    const nix = json[drvPath[attr]!];
    assert.ok(nix, `nix show-derivation knows ${attr}`);
    const d = parse(attr);
    assert.deepEqual(
      Object.fromEntries([...d.outputs].map(([n, o]) => [n, o])),
      Object.fromEntries(Object.entries(nix.outputs as Record<string, any>).map(([n, o]) => [n, { path: o.path ?? "", hashAlgo: o.hashAlgo ?? "", hash: o.hash ?? "" }])),
      `${attr} outputs`,
    );
    assert.deepEqual(Object.fromEntries(d.inputDrvs), nix.inputDrvs, `${attr} inputDrvs`);
    assert.deepEqual(d.inputSrcs, nix.inputSrcs, `${attr} inputSrcs`);
    assert.equal(d.system, nix.system);
    assert.equal(d.builder, nix.builder);
    assert.deepEqual(d.args, nix.args, `${attr} args`);
    assert.deepEqual(Object.fromEntries(d.env), nix.env, `${attr} env`);
  }
});

test("the shapes we asked for are there", () => {
  assert.deepEqual([...parse("plain").outputs.keys()], ["out"]);
  assert.deepEqual(parse("plain").args, ["-c", "echo hi > $out"]);
  assert.deepEqual([...parse("dep").inputDrvs], [[drvPath.plain, ["out"]]]);
  const weird = parse("escapes").env.get("weird")!;
  for (const s of ['"', "\\", "\n", "\t", "\r", "😀"]) assert.ok(weird.includes(s), JSON.stringify(s));
  for (const s of ['\\"', "\\\\", "\\n", "\\t", "\\r"]) assert.ok(text.escapes!.includes(s), `escaped ${s} in the .drv`);
  assert.deepEqual([...parse("multi").outputs.keys()], ["dev", "out"]);
  const fixed = parse("fixed").outputs.get("out")!;
  assert.equal(fixed.hashAlgo, "sha256");
  assert.equal(fixed.hash, "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4");
  assert.equal(parse("withsrc").inputSrcs.length, 1);
  assert.deepEqual([...parse("top").inputDrvs.values()], [...parse("top").inputDrvs.keys()].map((p) =>
    p === drvPath.multi ? ["dev"] : ["out"]));
  assert.deepEqual(parse("ca").outputs.get("out"), { path: "", hashAlgo: "r:sha256", hash: "" });
  assert.deepEqual(parse("deferred").outputs.get("out"), { path: "", hashAlgo: "", hash: "" });
});

test("Derivation nodes link to their inputs and the graph walks by CID", async () => {
  // Nodes are made inputs first: a node's CID depends on its inputs' CIDs.
  const byPath = new Map<string, EncodedBlock>();
  const textByPath = new Map(ATTRS.map((a) => [drvPath[a]!, text[a]!]));
  const nodeFor = (path: string): EncodedBlock => {
    const known = byPath.get(path);
    if (known) return known;
    const parsed = parseDerivation(textByPath.get(path)!, { name: derivationNameFromPath(path) });
    const block = toDerivationNode(parsed, (input) => nodeFor(input).cid);
    byPath.set(path, block);
    return block;
  };
  for (const attr of ATTRS) nodeFor(drvPath[attr]!);

  const dep = decodeDerivation(byPath.get(drvPath.dep!)!.bytes, byPath.get(drvPath.dep!)!.cid);
  assert.equal(dep.inputDrvs.length, 1);
  assert.ok(dep.inputDrvs[0]!.drv.equals(byPath.get(drvPath.plain!)!.cid));
  const deferred = decodeDerivation(byPath.get(drvPath.deferred!)!.bytes);
  assert.ok(deferred.inputDrvs[0]!.drv.equals(byPath.get(drvPath.ca!)!.cid));

  // Walk from `top` using nothing but CIDs and a block store.
  const blocks = new Map([...byPath.values()].map((b) => [b.cid.toString(), b.bytes]));
  const reached = new Map<string, string>();
  const walk = (cid: CID) => {
    const node = decodeDerivation(blocks.get(cid.toString())!, cid);
    const inputPath = [...byPath].find(([, b]) => b.cid.equals(cid))![0];
    reached.set(node.name, formatDerivation(derivationFromNode(node)));
    assert.equal(reached.get(node.name), textByPath.get(inputPath), `${node.name} rebuilt from its node`);
    for (const input of node.inputDrvs) walk(input.drv);
  };
  walk(byPath.get(drvPath.top!)!.cid);
  assert.deepEqual([...reached.keys()].sort(), ["dep", "fixed", "multi", "plain", "top"]);
});
