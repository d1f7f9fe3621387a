// NAR listings: the `<hash>.ls` files of a binary cache (docs/nix-protocol.md §5.3, version 1).
//
// * `NarListingBuilder` — a NarVisitor that builds the listing while a NAR is parsed.
// * `formatNarListing` — the exact bytes Nix 2.8 writes (`listNar` in nar-accessor.cc with its
//   own JSON writer): compact, keys in the order version/root, type/size/executable/narOffset,
//   `executable` only when true, entries in NAR (bytewise) order. Strings are escaped the way
//   2.8 escapes them — `\"`, `\\`, `\n`, `\r`, `\t`, other bytes below 0x20 as `\u00xx` — and
//   every other byte is written raw, so a non-UTF-8 file name gives a `.ls` that is not valid
//   UTF-8 (checked against the real 2.8). Hence the result is bytes, not a string.
// * `parseNarListing` — a strict parser for listings that come from outside (PUT by `nix copy
//   … write-nar-listing=true`): 2.8's key order and master's (alphabetical, `executable:false`)
//   are both accepted. It reads JSON from bytes itself: raw bytes ≥ 0x80 stay raw bytes (as 2.8
//   writes them) and `\uXXXX` escapes become UTF-8, which JSON.parse on a decoded string could
//   not tell apart; it also rejects duplicate keys, which JSON.parse silently drops. Beyond the
//   JSON, it checks names and targets with the NAR rules, sorted entries, and that every
//   `narOffset` is exactly where the NAR layout puts it (the layout follows from names, types,
//   sizes and targets alone).
//
// Names and targets are byte strings (see nar.ts). Directory entries are a Map, not an object:
// object keys that look like integers ("10", "9") would be reordered by JavaScript.
import { FormatError } from "./errors.ts";
import {
  NAR_DEFAULT_LIMITS,
  NAR_MAGIC,
  NarParser,
  byteStringToBytes,
  narPadding,
  showByteString,
  type ByteString,
  type NarDirectory,
  type NarFile,
  type NarLimits,
  type NarSymlink,
  type NarVisitor,
} from "./nar.ts";

export interface NarListingRegular {
  type: "regular";
  size: number;
  executable: boolean;
  narOffset: number;
}

export interface NarListingSymlink {
  type: "symlink";
  target: ByteString;
}

export interface NarListingDirectory {
  type: "directory";
  /** In bytewise order of the names. */
  entries: Map<ByteString, NarListingNode>;
}

export type NarListingNode = NarListingRegular | NarListingSymlink | NarListingDirectory;

export interface NarListing {
  version: 1;
  root: NarListingNode;
}

// ---------------------------------------------------------------------------------------------
// Building

/** Builds the listing of the NAR it is fed: pass it to a NarParser, read `listing` after end(). */
export class NarListingBuilder implements NarVisitor {
  private root: NarListingNode | undefined;
  private readonly stack: NarListingDirectory[] = [];

  directory(dir: NarDirectory): void {
    const node: NarListingDirectory = { type: "directory", entries: new Map() };
    this.add(dir.name, node);
    this.stack.push(node);
  }

  directoryEnd(): void {
    this.stack.pop();
  }

  file(file: NarFile): void {
    this.add(file.name, { type: "regular", size: file.size, executable: file.executable, narOffset: file.narOffset });
  }

  symlink(link: NarSymlink): void {
    this.add(link.name, { type: "symlink", target: link.target });
  }

  get listing(): NarListing {
    if (this.root === undefined || this.stack.length > 0) throw new Error("NarListingBuilder: the NAR is not complete");
    return { version: 1, root: this.root };
  }

  private add(name: ByteString, node: NarListingNode): void {
    const parent = this.stack[this.stack.length - 1];
    if (parent) parent.entries.set(name, node);
    else this.root = node;
  }
}

/** Parses (and validates) a whole NAR and returns its listing. */
export async function narListing(source: AsyncIterable<Uint8Array>, limits?: Partial<NarLimits>): Promise<NarListing> {
  const builder = new NarListingBuilder();
  const parser = new NarParser(builder, limits);
  for await (const chunk of source) parser.write(chunk);
  parser.end();
  return builder.listing;
}

// ---------------------------------------------------------------------------------------------
// Writing

const NEEDS_ESCAPE = /["\\\x00-\x1f]/;
const ESCAPES = /["\\\x00-\x1f]/g;

/** A byte string as a JSON string, escaped like Nix 2.8's `toJSON` (raw bytes otherwise). */
function jsonString(s: ByteString): string {
  if (!NEEDS_ESCAPE.test(s)) return `"${s}"`;
  return `"${s.replace(ESCAPES, (c) => {
    switch (c) {
      case '"':
        return '\\"';
      case "\\":
        return "\\\\";
      case "\n":
        return "\\n";
      case "\r":
        return "\\r";
      case "\t":
        return "\\t";
      default:
        return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
    }
  })}"`;
}

function formatNode(node: NarListingNode, out: string[]): void {
  switch (node.type) {
    case "regular":
      out.push(`{"type":"regular","size":${node.size}`);
      if (node.executable) out.push(`,"executable":true`);
      // 2.8 leaves narOffset out when it is 0, which no real file has (the first content byte
      // of a NAR is at 96 at the earliest).
      if (node.narOffset !== 0) out.push(`,"narOffset":${node.narOffset}`);
      out.push("}");
      break;
    case "symlink":
      out.push(`{"type":"symlink","target":${jsonString(node.target)}}`);
      break;
    case "directory": {
      out.push(`{"type":"directory","entries":{`);
      let first = true;
      for (const [name, child] of node.entries) {
        out.push(first ? `${jsonString(name)}:` : `,${jsonString(name)}:`);
        first = false;
        formatNode(child, out);
      }
      out.push("}}");
      break;
    }
  }
}

/** The `.ls` file, byte for byte as Nix 2.8 writes it (no trailing newline). */
export function formatNarListing(listing: NarListing): Uint8Array {
  const out: string[] = [`{"version":1,"root":`];
  formatNode(listing.root, out);
  out.push("}");
  return byteStringToBytes(out.join(""));
}

// ---------------------------------------------------------------------------------------------
// Layout: where each file's contents sit in the NAR, computed from the listing alone.

const str = (length: number): number => 8 + length + narPadding(length);
const TAG = 16; // every tag except "directory" and "executable" is ≤ 8 bytes: 8 + 8
const OPEN_TYPE = TAG + TAG; // "(" "type"

/**
 * Calls `onFile(node, narOffset)` for every regular file in NAR order, and returns the NAR
 * size. Pure arithmetic: the layout of a NAR follows from names, types, sizes and targets.
 */
export function narLayout(root: NarListingNode, onFile?: (node: NarListingRegular, narOffset: number, path: ByteString) => void): number {
  let at = str(NAR_MAGIC.length);
  const walk = (node: NarListingNode, path: ByteString): void => {
    at += OPEN_TYPE;
    switch (node.type) {
      case "regular":
        at += TAG; // "regular"
        if (node.executable) at += str(10) + str(0);
        at += TAG + 8; // "contents", u64 size
        onFile?.(node, at, path);
        at += node.size + narPadding(node.size);
        break;
      case "symlink":
        at += TAG + TAG + str(node.target.length); // "symlink" "target" target
        break;
      case "directory":
        at += str(9); // "directory"
        for (const [name, child] of node.entries) {
          at += TAG + TAG + TAG + str(name.length) + TAG; // "entry" "(" "name" name "node"
          walk(child, path === "/" ? "/" + name : path + "/" + name);
          at += TAG; // ")" of the entry
        }
        break;
    }
    at += TAG; // ")" of the node
  };
  walk(root, "/");
  return at;
}

// ---------------------------------------------------------------------------------------------
// Comparing

function equalNodes(a: NarListingNode, b: NarListingNode): boolean {
  switch (a.type) {
    case "regular":
      return b.type === "regular" && a.size === b.size && a.executable === b.executable && a.narOffset === b.narOffset;
    case "symlink":
      return b.type === "symlink" && a.target === b.target;
    case "directory": {
      if (b.type !== "directory" || a.entries.size !== b.entries.size) return false;
      const bi = b.entries.entries();
      for (const [name, child] of a.entries) {
        const next = bi.next().value!;
        if (next[0] !== name || !equalNodes(child, next[1])) return false;
      }
      return true;
    }
  }
}

/** Same tree, same sizes, flags, targets and offsets. */
export function equalNarListings(a: NarListing, b: NarListing): boolean {
  return a.version === b.version && equalNodes(a.root, b.root);
}

// ---------------------------------------------------------------------------------------------
// Parsing (strict)

type Json = null | boolean | number | ByteString | Json[] | JsonObject;
/** A JSON object with its keys in document order (keys are byte strings). */
class JsonObject {
  readonly fields = new Map<ByteString, Json>();
}

function listingError(code: string, message: string): FormatError {
  return new FormatError(code, `invalid NAR listing: ${message}`);
}

/** Reads JSON from bytes; strings come out as byte strings (escapes → UTF-8 bytes). */
class JsonReader {
  private readonly b: Uint8Array;
  private readonly maxDepth: number;
  private pos = 0;

  constructor(bytes: Uint8Array, maxDepth: number) {
    this.b = bytes;
    this.maxDepth = maxDepth;
  }

  document(): Json {
    const v = this.value(0);
    this.ws();
    if (this.pos !== this.b.length) this.fail("unexpected data after the JSON value");
    return v;
  }

  private fail(message: string): never {
    throw listingError("nar-listing.json", `${message} at byte ${this.pos}`);
  }

  private ws(): void {
    const b = this.b;
    while (this.pos < b.length) {
      const c = b[this.pos];
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.pos++;
      else break;
    }
  }

  private value(depth: number): Json {
    this.ws();
    if (this.pos >= this.b.length) this.fail("unexpected end of input");
    const c = this.b[this.pos]!;
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (depth >= this.maxDepth) throw listingError("nar-listing.depth", `JSON nesting deeper than ${this.maxDepth} at byte ${this.pos}`);
      return c === 0x7b ? this.object(depth + 1) : this.array(depth + 1);
    }
    if (c === 0x22) return this.string();
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
    if (this.literal("true")) return true;
    if (this.literal("false")) return false;
    if (this.literal("null")) return null;
    this.fail(`unexpected byte 0x${c.toString(16).padStart(2, "0")}`);
  }

  private literal(word: string): boolean {
    for (let i = 0; i < word.length; i++) if (this.b[this.pos + i] !== word.charCodeAt(i)) return false;
    this.pos += word.length;
    return true;
  }

  private object(depth: number): JsonObject {
    const obj = new JsonObject();
    this.pos++; // {
    if (this.closesAtOnce(0x7d)) return obj;
    for (;;) {
      this.ws();
      if (this.b[this.pos] !== 0x22) this.fail("expected a string key");
      const keyAt = this.pos;
      const key = this.string();
      if (obj.fields.has(key)) {
        throw listingError("nar-listing.duplicate-key", `duplicate key ${showByteString(key)} at byte ${keyAt}`);
      }
      this.ws();
      if (this.b[this.pos] !== 0x3a) this.fail("expected ':'");
      this.pos++;
      obj.fields.set(key, this.value(depth));
      if (this.closesAfterItem(0x7d, "expected ',' or '}'")) return obj;
    }
  }

  private array(depth: number): Json[] {
    const arr: Json[] = [];
    this.pos++; // [
    if (this.closesAtOnce(0x5d)) return arr;
    for (;;) {
      arr.push(this.value(depth));
      if (this.closesAfterItem(0x5d, "expected ',' or ']'")) return arr;
    }
  }

  /** Just after `{` or `[`: whether the container is empty (then `close` is consumed). */
  private closesAtOnce(close: number): boolean {
    this.ws();
    if (this.b[this.pos] !== close) return false;
    this.pos++;
    return true;
  }

  /** After a member or element: consumes `,` (false: another follows) or `close` (true). */
  private closesAfterItem(close: number, expected: string): boolean {
    this.ws();
    const c = this.b[this.pos];
    if (c !== close && c !== 0x2c) this.fail(expected);
    this.pos++;
    return c === close;
  }

  private number(): number {
    const b = this.b;
    const start = this.pos;
    if (b[this.pos] === 0x2d) this.pos++;
    const digits = this.pos;
    while (this.pos < b.length && b[this.pos]! >= 0x30 && b[this.pos]! <= 0x39) this.pos++;
    if (this.pos === digits) this.fail("expected a digit");
    if (b[digits] === 0x30 && this.pos - digits > 1) {
      this.pos = digits;
      this.fail("leading zero in a number");
    }
    const c = b[this.pos];
    if (c === 0x2e || c === 0x65 || c === 0x45) this.fail("only integers are allowed here");
    const n = Number(String.fromCharCode(...b.subarray(start, this.pos)));
    if (!Number.isSafeInteger(n)) {
      this.pos = start;
      this.fail("integer out of range");
    }
    return n;
  }

  private hex4(): number {
    let v = 0;
    for (let i = 0; i < 4; i++) {
      const c = this.b[this.pos++];
      let d: number;
      if (c === undefined) this.fail("unexpected end of input in a \\u escape");
      else if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x37;
      else {
        this.pos--;
        this.fail("bad hex digit in a \\u escape");
      }
      v = v * 16 + d;
    }
    return v;
  }

  private string(): ByteString {
    const b = this.b;
    this.pos++; // opening quote
    let s = "";
    let run = this.pos;
    for (;;) {
      if (this.pos >= b.length) this.fail("unterminated string");
      const c = b[this.pos]!;
      if (c === 0x22) {
        s += String.fromCharCode.apply(null, b.subarray(run, this.pos) as unknown as number[]);
        this.pos++;
        return s;
      }
      if (c < 0x20) this.fail(`raw control byte 0x${c.toString(16).padStart(2, "0")} in a string`);
      if (c !== 0x5c) {
        this.pos++;
        continue;
      }
      s += String.fromCharCode.apply(null, b.subarray(run, this.pos) as unknown as number[]);
      this.pos++;
      const e = b[this.pos++];
      switch (e) {
        case 0x22:
          s += '"';
          break;
        case 0x5c:
          s += "\\";
          break;
        case 0x2f:
          s += "/";
          break;
        case 0x62:
          s += "\b";
          break;
        case 0x66:
          s += "\f";
          break;
        case 0x6e:
          s += "\n";
          break;
        case 0x72:
          s += "\r";
          break;
        case 0x74:
          s += "\t";
          break;
        case 0x75: {
          let cp = this.hex4();
          if (cp >= 0xd800 && cp <= 0xdbff) {
            if (b[this.pos] !== 0x5c || b[this.pos + 1] !== 0x75) this.fail("unpaired surrogate in a \\u escape");
            this.pos += 2;
            const lo = this.hex4();
            if (lo < 0xdc00 || lo > 0xdfff) this.fail("unpaired surrogate in a \\u escape");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            this.fail("unpaired surrogate in a \\u escape");
          }
          // A code point in JSON text is a character: its bytes in the name are its UTF-8.
          s += String.fromCharCode(...new TextEncoder().encode(String.fromCodePoint(cp)));
          break;
        }
        default:
          this.pos--;
          this.fail("bad escape in a string");
      }
      run = this.pos;
    }
  }
}

function describe(v: Json): string {
  if (v === null) return "null";
  if (v instanceof JsonObject) return "an object";
  if (Array.isArray(v)) return "an array";
  return typeof v;
}

interface Fields {
  [key: string]: "number" | "string" | "boolean" | "object";
}

/** Checks an object's keys: exactly the required ones plus any of the optional ones. */
function fields(v: Json, where: string, required: Fields, optional: Fields = {}): Map<string, Json> {
  if (!(v instanceof JsonObject)) throw listingError("nar-listing.field", `${where} is ${describe(v)}, expected an object`);
  for (const [key, value] of v.fields) {
    // hasOwn: keys come from outside ("__proto__", "constructor"…).
    const want = Object.hasOwn(required, key) ? required[key] : Object.hasOwn(optional, key) ? optional[key] : undefined;
    if (want === undefined) throw listingError("nar-listing.field", `${where} has an unknown key ${showByteString(key)}`);
    const got = value instanceof JsonObject ? "object" : value === null || Array.isArray(value) ? "other" : typeof value;
    if (got !== want) throw listingError("nar-listing.field", `${where}: "${key}" is ${describe(value)}, expected a ${want}`);
  }
  for (const key of Object.keys(required)) {
    if (!v.fields.has(key)) throw listingError("nar-listing.field", `${where} has no "${key}"`);
  }
  return v.fields;
}

function count(v: Json, where: string, key: string): number {
  const n = v as number;
  if (n < 0) throw listingError("nar-listing.field", `${where}: "${key}" is negative`);
  return n;
}

function checkName(name: ByteString, limits: NarLimits, where: string): void {
  const bad = (what: string) => listingError("nar-listing.name", `${where}: entry name ${showByteString(name)} ${what}`);
  if (name.length === 0) throw bad("is empty");
  if (name === "." || name === "..") throw bad("is not allowed");
  if (name.includes("/")) throw bad("contains '/'");
  if (name.includes("\0")) throw bad("contains a NUL byte");
  if (name.length > limits.maxNameLength) throw bad(`is longer than ${limits.maxNameLength} bytes`);
}

function toNode(v: Json, path: ByteString, depth: number, limits: NarLimits): NarListingNode {
  const where = `entry ${showByteString(path)}`;
  const type = v instanceof JsonObject ? v.fields.get("type") : undefined;
  switch (type) {
    case "regular": {
      const f = fields(v, where, { type: "string", size: "number", narOffset: "number" }, { executable: "boolean" });
      return {
        type: "regular",
        size: count(f.get("size")!, where, "size"),
        executable: f.get("executable") === true,
        narOffset: count(f.get("narOffset")!, where, "narOffset"),
      };
    }
    case "symlink": {
      const f = fields(v, where, { type: "string", target: "string" });
      const target = f.get("target") as ByteString;
      if (target.length === 0 || target.includes("\0") || target.length > limits.maxTargetLength) {
        throw listingError("nar-listing.target", `${where}: symlink target must be 1..${limits.maxTargetLength} bytes without NUL`);
      }
      return { type: "symlink", target };
    }
    case "directory": {
      const f = fields(v, where, { type: "string", entries: "object" });
      const entries = new Map<ByteString, NarListingNode>();
      let prev: ByteString | null = null;
      for (const [name, child] of (f.get("entries") as JsonObject).fields) {
        checkName(name, limits, where);
        const childPath = path === "/" ? "/" + name : path + "/" + name;
        if (prev !== null && name <= prev) {
          throw listingError("nar-listing.unsorted", `${where}: entry ${showByteString(name)} comes after ${showByteString(prev)}`);
        }
        prev = name;
        if (depth + 1 >= limits.maxDepth) throw listingError("nar-listing.depth", `entry ${showByteString(childPath)} is nested too deep`);
        entries.set(name, toNode(child, childPath, depth + 1, limits));
      }
      return { type: "directory", entries };
    }
    default:
      if (!(v instanceof JsonObject)) throw listingError("nar-listing.field", `${where} is ${describe(v)}, expected an object`);
      throw listingError(
        "nar-listing.type",
        type === undefined ? `${where} has no "type"` : `${where} has an unknown type ${typeof type === "string" ? showByteString(type) : describe(type)}`,
      );
  }
}

/**
 * Parses a `.ls` (version 1) from outside, strictly: FormatError with a `nar-listing.*` code
 * for bad JSON (`json`, `duplicate-key`, `depth`), a wrong structure (`version`, `field`,
 * `type`), bad names or targets (`name`, `target`, `unsorted`), or a `narOffset` that is not
 * where the NAR layout puts the file (`offset`).
 */
export function parseNarListing(bytes: Uint8Array, limits: Partial<NarLimits> = {}): NarListing {
  const lim: NarLimits = { ...NAR_DEFAULT_LIMITS, ...limits };
  const doc = new JsonReader(bytes, 2 * lim.maxDepth + 4).document();
  const top = fields(doc, "the listing", { version: "number", root: "object" });
  if (top.get("version") !== 1) throw listingError("nar-listing.version", `version ${String(top.get("version"))}, expected 1`);
  const root = toNode(top.get("root")!, "/", 0, lim);
  narLayout(root, (node, narOffset, path) => {
    if (node.narOffset !== narOffset) {
      throw listingError("nar-listing.offset", `entry ${showByteString(path)}: narOffset ${node.narOffset}, but the NAR layout puts it at ${narOffset}`);
    }
  });
  return { version: 1, root };
}
