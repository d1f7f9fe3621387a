// .drv files: Nix's ATerm `Derive([outputs],[inputDrvs],[inputSrcs],system,builder,[args],[env])`
// parsed strictly, written back byte for byte, and turned into the IPLD `Derivation` node whose
// inputDrvs are links to the input derivations' own nodes (shared/schema.ipldsch).
//
// The format, as Nix 2.8 writes it (libstore/derivations.cc, unparse): no whitespace; strings
// in double quotes where `"`, `\`, newline, carriage return and tab are written `\"`, `\\`,
// `\n`, `\r`, `\t` and every other character as itself; outputs, inputDrvs (and the output
// names of each), inputSrcs and env sorted by byte order without duplicates (they come from
// std::map / std::set); args in their own order; no newline at the end.
//
// Strictness: we accept exactly what Nix writes. Nix's reader also takes `\x` for any other x
// and unsorted lists, but such text never comes from Nix and could not be written back
// identically, so it is refused. This is what makes `formatDerivation(parseDerivation(t)) === t`
// hold for every accepted `t`.
import type { CID } from "multiformats/cid";
import { FormatError } from "./errors.ts";
import { checkLink, decodeNode, encodeNode, type EncodedBlock } from "./block.ts";
import { DAG_CBOR_CODEC } from "./cid.ts";
import { HASH_SIZES, isHashAlgorithm } from "./hash.ts";
import { DEFAULT_STORE_DIR, parseStorePath, storePathNameError } from "./store-path.ts";

/** One output as the ATerm has it; see DerivationOutput in schema.ipldsch for the four kinds. */
export interface DerivationOutput {
  path: string;
  hashAlgo: string;
  hash: string;
}

export interface ParsedDerivation {
  /** Derivation name (the .drv base name without hash and ".drv"). */
  name: string;
  /** Output name → output. */
  outputs: Map<string, DerivationOutput>;
  /** Store path of an input .drv → the output names used. */
  inputDrvs: Map<string, string[]>;
  inputSrcs: string[];
  system: string;
  builder: string;
  args: string[];
  env: Map<string, string>;
}

/** The IPLD node (schema type Derivation), as decoded. */
export interface DerivationNode {
  name: string;
  outputs: Array<{ name: string } & DerivationOutput>;
  inputDrvs: Array<{ drv: CID; path: string; outputs: string[] }>;
  inputSrcs: string[];
  system: string;
  builder: string;
  args: string[];
  env: Array<{ name: string; value: string }>;
}

export interface ParseDerivationOptions {
  storeDir?: string;
  /** The derivation name; by default the `name` environment variable. */
  name?: string;
}

// ---- parsing -----------------------------------------------------------------------------

/** Parses the text of a .drv file (bytes must be UTF-8). Throws FormatError with the offset. */
export function parseDerivation(text: string | Uint8Array, options: ParseDerivationOptions = {}): ParsedDerivation {
  const storeDir = options.storeDir ?? DEFAULT_STORE_DIR;
  const label = options.name === undefined ? "derivation" : `derivation ${options.name}`;
  if (typeof text !== "string") {
    try {
      text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(text);
    } catch (err) {
      throw new FormatError("drv.utf8", `${label}: the .drv is not valid UTF-8`, { cause: err });
    }
  }
  const p = new AtermReader(text, label);

  if (text.startsWith("DrvWithVersion(")) {
    p.fail("drv.version", "versioned derivations (DrvWithVersion, Nix's dynamic-derivations format) are not supported");
  }
  p.expect("Derive(");

  const outputs = new Map<string, DerivationOutput>();
  const outputsAt = p.pos;
  let lastOutput: string | undefined;
  p.list(() => {
    const at = p.pos;
    p.expect("(");
    // Offsets of the four strings, so an error points at the one that is wrong.
    const fieldAt: Record<OutputField, number> = { name: p.pos, path: 0, hashAlgo: 0, hash: 0 };
    const name = p.string();
    p.expect(",");
    fieldAt.path = p.pos;
    const path = p.string();
    p.expect(",");
    fieldAt.hashAlgo = p.pos;
    const hashAlgo = p.string();
    p.expect(",");
    fieldAt.hash = p.pos;
    const hash = p.string();
    p.expect(")");
    const error = outputError(name, { path, hashAlgo, hash }, storeDir);
    if (error) p.fail("drv.output", error[1], fieldAt[error[0]]);
    p.checkOrder(lastOutput, name, "output names", at);
    outputs.set(name, { path, hashAlgo, hash });
    lastOutput = name;
  });
  p.check(outputsError(outputs), "drv.output", outputsAt);
  p.expect(",");

  const inputDrvs = new Map<string, string[]>();
  let lastInputDrv: string | undefined;
  p.list(() => {
    const at = p.pos;
    p.expect("(");
    const path = p.string();
    p.check(drvPathError(path, storeDir), "drv.input-drv", at + 1);
    p.checkOrder(lastInputDrv, path, "input derivations", at);
    lastInputDrv = path;
    p.expect(",");
    const names: string[] = [];
    p.list(() => {
      const nameAt = p.pos;
      const name = p.string();
      p.check(storePathNameError(name)?.message, "drv.input-drv", nameAt);
      p.checkOrder(names.at(-1), name, `output names of ${path}`, nameAt);
      names.push(name);
    });
    p.expect(")");
    inputDrvs.set(path, names);
  });
  p.expect(",");

  const inputSrcs: string[] = [];
  p.list(() => {
    const at = p.pos;
    const path = p.string();
    p.check(storePathError(path, storeDir), "drv.input-src", at);
    p.checkOrder(inputSrcs.at(-1), path, "input sources", at);
    inputSrcs.push(path);
  });
  p.expect(",");
  const system = p.string();
  p.expect(",");
  const builder = p.string();
  p.expect(",");
  const args: string[] = [];
  p.list(() => args.push(p.string()));
  p.expect(",");

  const env = new Map<string, string>();
  let lastKey: string | undefined;
  p.list(() => {
    const at = p.pos;
    p.expect("(");
    const key = p.string();
    p.expect(",");
    const value = p.string();
    p.expect(")");
    p.checkOrder(lastKey, key, "environment variables", at);
    env.set(key, value);
    lastKey = key;
  });
  p.expect(")");
  if (p.pos !== text.length) p.fail("drv.trailing", "unexpected text after the closing ')'");

  const name = options.name ?? env.get("name");
  if (name === undefined) {
    throw new FormatError("drv.name", `${label}: no name given and no 'name' environment variable`);
  }
  const nameError = storePathNameError(name);
  if (nameError) throw new FormatError("drv.name", `${label}: invalid derivation name: ${nameError.message}`);

  return { name, outputs, inputDrvs, inputSrcs, system, builder, args, env };
}

/** The derivation name from a .drv store path (`/nix/store/<hash>-<name>.drv`). */
export function derivationNameFromPath(drvPath: string, storeDir: string = DEFAULT_STORE_DIR): string {
  const err = drvPathError(drvPath, storeDir);
  if (err) throw new FormatError("drv.path", err);
  return parseStorePath(drvPath, storeDir).name.slice(0, -".drv".length);
}

// A cursor over the ATerm text; every error names the offset it happened at.
class AtermReader {
  readonly text: string;
  readonly label: string;
  pos = 0;

  constructor(text: string, label: string) {
    this.text = text;
    this.label = label;
  }

  fail(code: string, message: string, at: number = this.pos): never {
    throw new FormatError(code, `${this.label}: ${message} at offset ${at}${this.context(at)}`);
  }

  private context(at: number): string {
    if (at >= this.text.length) return " (end of text)";
    const snippet = this.text.slice(at, at + 20);
    return ` (near ${JSON.stringify(snippet)})`;
  }

  expect(literal: string): void {
    if (!this.text.startsWith(literal, this.pos)) {
      // Point at the first differing character, not the start of the literal.
      let at = this.pos;
      while (at < this.text.length && at - this.pos < literal.length && this.text[at] === literal[at - this.pos]) at++;
      const found = at < this.text.length ? JSON.stringify(this.text[at]) : "the end of the text";
      const part = literal.length > 1 ? ` (of ${JSON.stringify(literal)})` : "";
      this.fail("drv.syntax", `expected ${JSON.stringify(literal[at - this.pos])}${part}, found ${found}`, at);
    }
    this.pos += literal.length;
  }

  /** `[item,item,…]`; `item` consumes one element. */
  list(item: () => void): void {
    this.expect("[");
    if (this.text[this.pos] === "]") {
      this.pos++;
      return;
    }
    for (;;) {
      item();
      const c = this.text[this.pos];
      if (c === ",") {
        this.pos++;
      } else if (c === "]") {
        this.pos++;
        return;
      } else {
        this.fail("drv.syntax", `expected "," or "]" in a list, found ${c === undefined ? "the end of the text" : JSON.stringify(c)}`);
      }
    }
  }

  string(): string {
    this.expect('"');
    const text = this.text;
    let out = "";
    let start = this.pos;
    for (let i = this.pos; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 0x22 /* " */) {
        out += text.slice(start, i);
        this.pos = i + 1;
        return out;
      }
      if (c === 0x5c /* \ */) {
        out += text.slice(start, i);
        const e = text[i + 1];
        const decoded = e === '"' ? '"' : e === "\\" ? "\\" : e === "n" ? "\n" : e === "r" ? "\r" : e === "t" ? "\t" : undefined;
        if (decoded === undefined) {
          const found = e === undefined ? "the end of the text" : JSON.stringify(e);
          this.fail("drv.escape", `invalid escape: backslash followed by ${found} (Nix writes only \\" \\\\ \\n \\r \\t)`, i);
        }
        out += decoded;
        i++;
        start = i + 1;
      } else if (c === 0x0a || c === 0x0d || c === 0x09) {
        this.fail("drv.string", `raw ${c === 0x0a ? "newline" : c === 0x0d ? "carriage return" : "tab"} in a string (Nix escapes it)`, i);
      }
    }
    this.fail("drv.string", "unterminated string", text.length);
  }

  check(error: string | undefined, code: string, at: number): void {
    if (error !== undefined) this.fail(code, error, at);
  }

  checkOrder(prev: string | undefined, cur: string, what: string, at: number): void {
    const error = orderError(prev, cur, what);
    if (error) this.fail("drv.order", error, at);
  }
}

// ---- validation shared by the parser and the node decoder ---------------------------------

/**
 * Compares strings in Unicode code point order, which is UTF-8 byte order: what Nix's
 * std::string comparison sorts by. JavaScript's `<` compares UTF-16 units and differs for
 * characters above U+FFFF against U+E000..U+FFFF.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (D800..DFFF) sort after E000..FFFF in code point order: shift them up.
    if (x >= 0xd800) x = x < 0xe000 ? x + 0x2000 : x - 0x800;
    if (y >= 0xd800) y = y < 0xe000 ? y + 0x2000 : y - 0x800;
    return x - y;
  }
  return a.length - b.length;
}

function orderError(prev: string | undefined, cur: string, what: string): string | undefined {
  if (prev === undefined) return undefined;
  const c = compareCodePoints(prev, cur);
  if (c === 0) return `duplicate in ${what}: ${JSON.stringify(cur)}`;
  if (c > 0) return `${what} not sorted: ${JSON.stringify(cur)} after ${JSON.stringify(prev)}`;
  return undefined;
}

function storePathError(path: string, storeDir: string): string | undefined {
  try {
    parseStorePath(path, storeDir);
    return undefined;
  } catch (err) {
    if (err instanceof FormatError) return err.message;
    throw err;
  }
}

function drvPathError(path: string, storeDir: string): string | undefined {
  const err = storePathError(path, storeDir);
  if (err) return err;
  return path.endsWith(".drv") ? undefined : `input derivation ${JSON.stringify(path)} is not a .drv`;
}

const HEX = /^[0-9a-f]*$/;

type OutputKind = "input-addressed" | "fixed" | "floating" | "deferred";

function outputKind(o: DerivationOutput): OutputKind {
  if (o.hashAlgo === "") return o.path === "" ? "deferred" : "input-addressed";
  return o.hash === "" ? "floating" : "fixed";
}

type OutputField = "name" | "path" | "hashAlgo" | "hash";

/** What is wrong with an output, and in which of its four strings; undefined if valid. */
function outputError(name: string, o: DerivationOutput, storeDir: string): [OutputField, string] | undefined {
  const nameError = storePathNameError(name);
  if (nameError) return ["name", `output name ${JSON.stringify(name)}: ${nameError.message}`];
  const where = `output ${JSON.stringify(name)}`;
  if (o.hashAlgo === "") {
    if (o.hash !== "") return ["hash", `${where} has a hash but no hash algorithm`];
  } else {
    const algo = o.hashAlgo.replace(/^(r:|text:)/, "");
    if (!isHashAlgorithm(algo)) return ["hashAlgo", `${where}: unknown hash algorithm ${JSON.stringify(o.hashAlgo)}`];
    if (o.hashAlgo.startsWith("text:") && algo !== "sha256") return ["hashAlgo", `${where}: text hashing needs sha256, not ${algo}`];
    if (o.hash !== "" && (o.hash.length !== HASH_SIZES[algo] * 2 || !HEX.test(o.hash))) {
      return ["hash", `${where}: hash must be ${HASH_SIZES[algo] * 2} lowercase hex digits for ${algo}`];
    }
  }
  const kind = outputKind(o);
  if (kind === "fixed" || kind === "input-addressed") {
    if (o.path === "") return ["path", `${where}: a ${kind} output needs a path`];
    const pathError = storePathError(o.path, storeDir);
    return pathError === undefined ? undefined : ["path", `${where}: ${pathError}`];
  }
  if (o.path !== "") return ["path", `${where}: a ${kind} output has no path yet, found ${JSON.stringify(o.path)}`];
  return undefined;
}

// Nix refuses a mix of output kinds in one derivation, and a fixed-output derivation has
// exactly one output named "out".
function outputsError(outputs: Map<string, DerivationOutput>): string | undefined {
  if (outputs.size === 0) return "a derivation needs at least one output";
  const kinds = new Set([...outputs.values()].map(outputKind));
  if (kinds.size > 1) return `outputs mix ${[...kinds].join(" and ")} kinds`;
  if (kinds.has("fixed") && (outputs.size !== 1 || !outputs.has("out"))) {
    return "a fixed-output derivation must have exactly one output, named \"out\"";
  }
  return undefined;
}

// ---- writing -----------------------------------------------------------------------------

const ESCAPES: Record<string, string> = { '"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t" };

function quote(s: string): string {
  return `"${s.replace(/["\\\n\r\t]/g, (c) => ESCAPES[c]!)}"`;
}

const sortedEntries = <V>(m: Map<string, V>): Array<[string, V]> => [...m].sort((a, b) => compareCodePoints(a[0], b[0]));
const sorted = (xs: readonly string[]): string[] => [...xs].sort(compareCodePoints);

/** Writes the ATerm text; for a parsed .drv, identical to the text it was parsed from. */
export function formatDerivation(d: ParsedDerivation): string {
  const outputs = sortedEntries(d.outputs).map(([n, o]) => `(${quote(n)},${quote(o.path)},${quote(o.hashAlgo)},${quote(o.hash)})`);
  const inputDrvs = sortedEntries(d.inputDrvs).map(([p, names]) => `(${quote(p)},[${sorted(names).map(quote).join(",")}])`);
  const env = sortedEntries(d.env).map(([k, v]) => `(${quote(k)},${quote(v)})`);
  return (
    `Derive([${outputs.join(",")}],[${inputDrvs.join(",")}],[${sorted(d.inputSrcs).map(quote).join(",")}],` +
    `${quote(d.system)},${quote(d.builder)},[${d.args.map(quote).join(",")}],[${env.join(",")}])`
  );
}

// ---- IPLD node ---------------------------------------------------------------------------

/**
 * The Derivation node of a parsed .drv. `resolveInputDrv` gives the CID of each input .drv's
 * own Derivation node (so they are encoded first, inputs before the derivations using them).
 */
export function toDerivationNode(
  parsed: ParsedDerivation,
  resolveInputDrv: (drvPath: string) => CID,
  options: { storeDir?: string } = {},
): EncodedBlock {
  const node: DerivationNode = {
    name: parsed.name,
    outputs: sortedEntries(parsed.outputs).map(([name, o]) => ({ name, path: o.path, hashAlgo: o.hashAlgo, hash: o.hash })),
    inputDrvs: sortedEntries(parsed.inputDrvs).map(([path, outputs]) => {
      const drv = resolveInputDrv(path);
      checkLink(drv, DAG_CBOR_CODEC, `Derivation ${parsed.name}: input ${path}`);
      return { drv, path, outputs: sorted(outputs) };
    }),
    inputSrcs: sorted(parsed.inputSrcs),
    system: parsed.system,
    builder: parsed.builder,
    args: [...parsed.args],
    env: sortedEntries(parsed.env).map(([name, value]) => ({ name, value })),
  };
  // A hand-built ParsedDerivation gets the parser's rules too: what is written, decodes.
  checkDerivationNode(node, `Derivation ${parsed.name}`, options.storeDir ?? DEFAULT_STORE_DIR);
  return encodeNode("Derivation", node);
}

/** Decodes and checks a Derivation node (same rules as the .drv parser). */
export function decodeDerivation(bytes: Uint8Array, cid?: CID, options: { storeDir?: string } = {}): DerivationNode {
  const node = decodeNode("Derivation", bytes, cid) as DerivationNode;
  checkDerivationNode(node, cid ? `Derivation ${cid}` : `Derivation ${node.name}`, options.storeDir ?? DEFAULT_STORE_DIR);
  return node;
}

/** The ParsedDerivation a node describes, e.g. to write the .drv text back from the node. */
export function derivationFromNode(node: DerivationNode): ParsedDerivation {
  return {
    name: node.name,
    outputs: new Map(node.outputs.map(({ name, path, hashAlgo, hash }) => [name, { path, hashAlgo, hash }])),
    inputDrvs: new Map(node.inputDrvs.map(({ path, outputs }) => [path, [...outputs]])),
    inputSrcs: [...node.inputSrcs],
    system: node.system,
    builder: node.builder,
    args: [...node.args],
    env: new Map(node.env.map(({ name, value }) => [name, value])),
  };
}

function checkDerivationNode(node: DerivationNode, where: string, storeDir: string): void {
  const fail = (field: string, message: string): never => {
    throw new FormatError("drv.node", `${where}: ${field}: ${message}`);
  };
  const check = (field: string, error: string | undefined): void => {
    if (error !== undefined) fail(field, error);
  };
  const nameError = storePathNameError(node.name);
  if (nameError) fail("name", nameError.message);

  node.outputs.forEach((o, i) => {
    check(`outputs[${i}]`, outputError(o.name, o, storeDir)?.[1]);
    check(`outputs[${i}]`, orderError(node.outputs[i - 1]?.name, o.name, "output names"));
  });
  check("outputs", outputsError(new Map(node.outputs.map((o) => [o.name, o]))));
  node.inputDrvs.forEach((d, i) => {
    check(`inputDrvs[${i}]`, drvPathError(d.path, storeDir));
    check(`inputDrvs[${i}]`, orderError(node.inputDrvs[i - 1]?.path, d.path, "input derivations"));
    checkLink(d.drv, DAG_CBOR_CODEC, `${where}: inputDrvs[${i}]`);
    d.outputs.forEach((name, j) => {
      check(`inputDrvs[${i}].outputs[${j}]`, storePathNameError(name)?.message);
      check(`inputDrvs[${i}].outputs[${j}]`, orderError(d.outputs[j - 1], name, "output names"));
    });
  });
  node.inputSrcs.forEach((path, i) => {
    check(`inputSrcs[${i}]`, storePathError(path, storeDir));
    check(`inputSrcs[${i}]`, orderError(node.inputSrcs[i - 1], path, "input sources"));
  });
  node.env.forEach((e, i) => check(`env[${i}]`, orderError(node.env[i - 1]?.name, e.name, "environment variables")));
}
