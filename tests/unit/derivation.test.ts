import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as dagCbor from "@ipld/dag-cbor";
import { CID } from "multiformats/cid";
import * as Digest from "multiformats/hashes/digest";
import {
  compareCodePoints,
  decodeDerivation,
  derivationFromNode,
  derivationNameFromPath,
  formatDerivation,
  parseDerivation,
  toDerivationNode,
} from "../../shared/derivation.ts";
import { FormatError } from "../../shared/errors.ts";

const cid = (seed: string, codec = 0x71) =>
  CID.create(1, codec, Digest.create(0x12, createHash("sha256").update(seed).digest()));

const OUT = "/nix/store/krxpxa4ahvkm5a4y512cr1argv53gvac-dep";
const INPUT_DRV = "/nix/store/hqi7n9vprkr0piv5090539wi7nw4mynx-plain.drv";
const SRC = "/nix/store/8x7wxnn5r7vq4bkddzjsz7dymbkkcq0h-a.nix";
// Written as Nix writes it: escapes for " \ newline CR tab, other characters as themselves.
const BASE =
  `Derive([("out","${OUT}","","")],[("${INPUT_DRV}",["dev","out"])],["${SRC}"],"x86_64-linux","/bin/sh",` +
  `["-c","echo \\"hi\\" \\\\ \\n\\r\\t ü 😀",""],` +
  `[("builder","/bin/sh"),("name","dep"),("out","${OUT}"),("system","x86_64-linux")])`;

test("parses every part of the ATerm", () => {
  const d = parseDerivation(BASE);
  assert.equal(d.name, "dep");
  assert.deepEqual([...d.outputs], [["out", { path: OUT, hashAlgo: "", hash: "" }]]);
  assert.deepEqual([...d.inputDrvs], [[INPUT_DRV, ["dev", "out"]]]);
  assert.deepEqual(d.inputSrcs, [SRC]);
  assert.equal(d.system, "x86_64-linux");
  assert.equal(d.builder, "/bin/sh");
  assert.deepEqual(d.args, ["-c", 'echo "hi" \\ \n\r\t ü 😀', ""]);
  assert.equal(d.env.get("out"), OUT);
  assert.equal(formatDerivation(d), BASE);
  assert.equal(formatDerivation(parseDerivation(new TextEncoder().encode(BASE))), BASE);
});

test("the name comes from the option, else from env.name", () => {
  assert.equal(parseDerivation(BASE, { name: "other" }).name, "other");
  assert.equal(derivationNameFromPath(INPUT_DRV), "plain");
  assert.throws(() => derivationNameFromPath(OUT), (e: FormatError) => e.code === "drv.path");
  const noName = BASE.replace(`("name","dep"),`, "");
  assert.throws(() => parseDerivation(noName), (e: FormatError) => e.code === "drv.name");
  assert.equal(parseDerivation(noName, { name: "dep" }).name, "dep");
  assert.throws(() => parseDerivation(BASE, { name: "bad name" }), (e: FormatError) => e.code === "drv.name");
});

test("other store dirs", () => {
  const gnu = BASE.replaceAll("/nix/store/", "/gnu/store/");
  assert.equal(formatDerivation(parseDerivation(gnu, { storeDir: "/gnu/store" })), gnu);
  assert.throws(() => parseDerivation(gnu), (e: FormatError) => e.code === "drv.output" && /not in the Nix store/.test(e.message));
});

test("strings sort by code point (UTF-8 byte order), as Nix's std::map", () => {
  assert.ok(compareCodePoints("\uffff", "😀") < 0);
  assert.ok("\uffff" > "😀", "JavaScript's own order differs here");
  assert.ok(compareCodePoints("a", "ab") < 0 && compareCodePoints("b", "ab") > 0 && compareCodePoints("x", "x") === 0);
  const env = (pairs: string) => BASE.replace(`("system","x86_64-linux")])`, `("system","x86_64-linux"),${pairs}])`);
  const ok = env(`("\uffff","a"),("😀","b")`);
  assert.equal(formatDerivation(parseDerivation(ok)), ok);
  assert.throws(() => parseDerivation(env(`("😀","b"),("\uffff","a")`)), (e: FormatError) => e.code === "drv.order");
});

/** Text with `from` replaced by `to`, and the offset where `to` starts. */
function mutate(from: string, to: string, base = BASE): [string, number] {
  const i = base.indexOf(from);
  assert.ok(i >= 0, `${from} in base`);
  return [base.slice(0, i) + to + base.slice(i + from.length), i];
}

test("malformed ATerm is rejected with a precise code and offset", () => {
  const fixedOut = "/nix/store/faiz8n61dnnfkxrafw2fv068w0h3cbv3-fixed";
  const hash = "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4";
  const cases: Array<{ text: [string, number]; code: string; delta?: number; message?: RegExp }> = [
    { text: mutate("Derive(", "Derivx("), code: "drv.syntax", delta: 5, message: /expected "e" \(of "Derive\("\), found "x"/ },
    { text: mutate("Derive(", "DrvWithVersion("), code: "drv.version" },
    { text: mutate("Derive([", "Derive( ["), code: "drv.syntax", delta: 7 },
    { text: [BASE + "\n", BASE.length], code: "drv.trailing" },
    { text: mutate('"-c",', '"-c";'), code: "drv.syntax", delta: 4, message: /expected "," or "\]"/ },
    { text: mutate('echo \\"', "echo \\x"), code: "drv.escape", delta: 5, message: /backslash followed by "x"/ },
    { text: mutate('echo \\"', "echo \n"), code: "drv.string", delta: 5, message: /raw newline/ },
    { text: mutate('echo \\"', "echo \t"), code: "drv.string", delta: 5, message: /raw tab/ },
    { text: [BASE.slice(0, BASE.indexOf("x86_64") + 3), BASE.indexOf("x86_64") + 3], code: "drv.string", message: /unterminated/ },
    { text: [BASE.slice(0, BASE.length - 1), BASE.length - 1], code: "drv.syntax", message: /end of the text/ },
    { text: mutate('("builder","/bin/sh"),("name","dep")', '("name","dep"),("builder","/bin/sh")'), code: "drv.order", delta: 15,
      message: /environment variables not sorted: "builder" after "name"/ },
    { text: mutate('("builder","/bin/sh"),', '("builder","/bin/sh"),("builder","x"),'), code: "drv.order", delta: 22, message: /duplicate/ },
    { text: mutate('["dev","out"]', '["out","dev"]'), code: "drv.order", delta: 7 },
    { text: mutate(`["${SRC}"]`, `["${SRC}","/nix/store/0pvxky59ddjlcfiday8npilrxhnf09wc-fixed"]`), code: "drv.order", delta: SRC.length + 4 },
    { text: mutate(`["${SRC}"]`, `["/nix/store/8x7wxnn5r7vq4bkddzjsz7dymbkkcq0e-a.nix"]`), code: "drv.input-src", delta: 1, message: /hash part/ },
    { text: mutate(`("${INPUT_DRV}"`, `("/nix/store/hqi7n9vprkr0piv5090539wi7nw4mynx-plain"`), code: "drv.input-drv", delta: 1, message: /not a \.drv/ },
    { text: mutate(`("out","${OUT}"`, `("out","/tmp/x"`), code: "drv.output", delta: 7 },
    { text: mutate(`("out","${OUT}"`, `("o ut","${OUT}"`), code: "drv.output", delta: 1, message: /output name/ },
    { text: mutate(`("out","${OUT}","","")`, `("out","${OUT}","","abc")`), code: "drv.output", delta: OUT.length + 13, message: /hash but no hash algorithm/ },
    { text: mutate(`("out","${OUT}","","")`, `("out","${fixedOut}","sha257","${hash}")`), code: "drv.output", delta: fixedOut.length + 10,
      message: /unknown hash algorithm/ },
    { text: mutate(`("out","${OUT}","","")`, `("out","${fixedOut}","sha256","${hash.slice(1)}")`), code: "drv.output",
      delta: fixedOut.length + 19, message: /64 lowercase hex/ },
    { text: mutate(`("out","${OUT}","","")`, `("out","","sha256","${hash}")`), code: "drv.output", delta: 7, message: /needs a path/ },
    { text: mutate(`("out","${OUT}","","")`, `("out","${OUT}","r:sha256","")`), code: "drv.output", delta: 7, message: /has no path yet/ },
    { text: mutate(`[("out","${OUT}","","")]`, "[]"), code: "drv.output", delta: 0, message: /at least one output/ },
    { text: mutate(`[("out","${OUT}","","")]`, `[("dev","","r:sha256",""),("out","","","")]`), code: "drv.output", delta: 0, message: /mix/ },
    { text: mutate(`[("out","${OUT}","","")]`, `[("dev","${fixedOut}","sha256","${hash}")]`), code: "drv.output", delta: 0,
      message: /exactly one output, named "out"/ },
  ];
  for (const { text: [text, at], code, delta, message } of cases) {
    assert.throws(() => parseDerivation(text), (e: FormatError) => {
      assert.ok(e instanceof FormatError, `${code}: ${e}`);
      assert.equal(e.code, code, e.message);
      const offset = Number(/at offset (\d+)/.exec(e.message)?.[1] ?? NaN);
      if (delta !== undefined) assert.equal(offset, at + delta, e.message);
      if (message) assert.match(e.message, message);
      return true;
    });
  }
});

test("every truncation and every one-character deletion either fails cleanly or round-trips", () => {
  for (let n = 0; n < BASE.length; n++) {
    assert.throws(() => parseDerivation(BASE.slice(0, n)), FormatError, `prefix of ${n}`);
  }
  for (let i = 0; i < BASE.length; i++) {
    const text = BASE.slice(0, i) + BASE.slice(i + 1);
    try {
      assert.equal(formatDerivation(parseDerivation(text)), text);
    } catch (err) {
      assert.ok(err instanceof FormatError, `deleting offset ${i}: ${err}`);
    }
  }
});

test("invalid UTF-8 bytes are refused", () => {
  const bytes = new TextEncoder().encode(BASE);
  const i = bytes.indexOf(0xc3); // the ü
  bytes[i + 1] = 0x28;
  assert.throws(() => parseDerivation(bytes), (e: FormatError) => e.code === "drv.utf8");
});

test("Derivation node: links to its inputs, decodes, and gives the .drv text back", () => {
  const parsed = parseDerivation(BASE);
  const inputCid = cid("plain");
  const block = toDerivationNode(parsed, (p) => {
    assert.equal(p, INPUT_DRV);
    return inputCid;
  });
  const node = decodeDerivation(block.bytes, block.cid);
  assert.equal(node.name, "dep");
  assert.equal(node.inputDrvs.length, 1);
  assert.ok(node.inputDrvs[0]!.drv.equals(inputCid));
  assert.deepEqual(node.inputDrvs[0]!.outputs, ["dev", "out"]);
  assert.deepEqual(node.env[0], { name: "builder", value: "/bin/sh" });
  assert.equal(formatDerivation(derivationFromNode(node)), BASE);
  // The encoding: env entries are [name, value] pairs, in Nix's order.
  const raw = dagCbor.decode(block.bytes) as { env: unknown[] };
  assert.deepEqual(raw.env[0], ["builder", "/bin/sh"]);

  assert.throws(() => toDerivationNode(parsed, () => cid("x", 0x55)), (e: FormatError) => e.code === "ipld.bad-link");
  assert.throws(() => toDerivationNode(parsed, () => { throw new Error("unknown input"); }), /unknown input/);
});

test("Derivation nodes that break the .drv rules are refused", () => {
  const block = toDerivationNode(parseDerivation(BASE), () => cid("plain"));
  const raw = dagCbor.decode(block.bytes) as Record<string, any>;
  const reencode = (change: (n: Record<string, any>) => void) => {
    const copy = structuredClone({ ...raw, inputDrvs: [] });
    change(copy);
    return dagCbor.encode(copy);
  };
  assert.ok(decodeDerivation(reencode(() => {})));
  const bad: Array<[string, (n: Record<string, any>) => void]> = [
    ["drv.node", (n) => n.env.reverse()],
    ["drv.node", (n) => n.env.push(n.env.at(-1))],
    ["drv.node", (n) => { n.inputSrcs = ["/nix/store/x"]; }],
    ["drv.node", (n) => { n.outputs[0].path = "/tmp/out"; }],
    ["drv.node", (n) => { n.outputs = []; }],
    ["drv.node", (n) => { n.name = "a b"; }],
    ["ipld.schema", (n) => { n.outputs[0].extra = ""; }],
    ["ipld.schema", (n) => { n.env[0] = ["a"]; }],
    ["ipld.schema", (n) => { delete n.system; }],
  ];
  for (const [code, change] of bad) {
    assert.throws(() => decodeDerivation(reencode(change)), (e: FormatError) => e.code === code, String(change));
  }
  // With the input kept but pointing at a raw block.
  const rawLink = dagCbor.encode({ ...raw, inputDrvs: [{ ...raw.inputDrvs[0], drv: cid("x", 0x55) }] });
  assert.throws(() => decodeDerivation(rawLink), (e: FormatError) => e.code === "ipld.bad-link");
});

test("a hand-built derivation gets the same checks before it becomes a node", () => {
  const parsed = parseDerivation(BASE);
  parsed.inputSrcs.push("/nix/store/not-valid");
  assert.throws(() => toDerivationNode(parsed, () => cid("plain")), (e: FormatError) => e.code === "drv.node" && /inputSrcs\[1\]/.test(e.message));
  // Order does not matter in the Maps: nodes (and formatDerivation) sort as Nix does.
  const shuffled = parseDerivation(BASE);
  shuffled.env = new Map([...shuffled.env].reverse());
  assert.equal(formatDerivation(shuffled), BASE);
  assert.ok(toDerivationNode(shuffled, () => cid("plain")).cid.equals(toDerivationNode(parseDerivation(BASE), () => cid("plain")).cid));
});
