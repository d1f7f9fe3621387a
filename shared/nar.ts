// The NAR (Nix ARchive) format: constants, byte-string helpers, and a strict streaming push
// parser. Format and strictness rules: docs/nix-protocol.md §5.1–5.2.
//
//   str(s) = u64le(len) ‖ s ‖ zero padding to a multiple of 8
//   nar    = str("nix-archive-1") node
//   node   = "(" "type" ( "regular" ["executable" ""] "contents" str(data)
//                       | "symlink" "target" str(target)
//                       | "directory" { "entry" "(" "name" str(name) "node" node ")" } ) ")"
//
// The parser is on the hot path (the chunker tees every uploaded NAR through it), so it is a
// push parser: bytes arrive in pieces of any size, file contents are never copied or even read
// (the visitor gets views of the caller's pieces), and only small tokens are buffered, in one
// buffer sized by the limits at construction (a hostile length field is refused, not
// allocated). Measured on the dev VM: a 2 GiB file in 64 KiB pieces ≈ 80 GB/s (the cost is
// per piece, not per byte); a NAR of 20 000 small files ≈ 0.8 M files/s (≈ 250 MB/s).
//
// It is as strict as Nix ≥ 2.25 / Lix plus the 2.35 limits, stricter than Nix 2.8 (which
// accepts unsorted directories and `executable` after `contents`): a NAR that any current
// client would reject must not get into the cache.
//
// Names, paths and symlink targets are *byte strings* (type `ByteString`): one UTF-16 code unit
// per byte, 0–255 (what Node calls "latin1"). File names on Linux are bytes, not text, and a NAR
// may carry names that are not UTF-8; a byte string keeps them exactly, sorts with `<` in the
// same bytewise order as Nix, and can be a Map key. ASCII names read naturally. Convert with
// `byteStringToBytes` / `bytesToByteString`; show to people with `showByteString`.
//
// Error codes (FormatError.code; every message names the byte offset and the entry path):
//   nar.magic                   not "nix-archive-1"
//   nar.token                   unexpected tag (message says what was expected and what came)
//   nar.token.length            a tag's length field is over the tag limit (32) — never allocated
//   nar.type                    unknown node type
//   nar.length                  a file size does not fit in 2^53-1
//   nar.padding                 a padding byte is not zero
//   nar.truncated               end() before the NAR was complete (says what was being read)
//   nar.trailing                bytes after the final ")"
//   nar.depth                   directory nesting reaches maxDepth (64)
//   nar.executable.value        the value after "executable" is not ""
//   nar.executable.duplicate    "executable" twice
//   nar.executable.after-contents
//   nar.contents.missing        a regular file without "contents"
//   nar.contents.duplicate      "contents" twice
//   nar.name.empty | nar.name.dot | nar.name.slash | nar.name.nul | nar.name.length
//   nar.name.case-hack          name contains "~nix~case~hack~" (only with rejectCaseHackNames)
//   nar.unsorted                entry name smaller than the previous one (bytewise)
//   nar.duplicate               entry name equal to the previous one
//   nar.target.empty | nar.target.nul | nar.target.length
import { FormatError } from "./errors.ts";

/** A string with one code unit per byte (0–255): raw file-name bytes, see the header. */
export type ByteString = string;

export const NAR_MAGIC = "nix-archive-1";

export interface NarLimits {
  /** A node's depth (root = 0) must be below this. Nix 2.35: 64. */
  maxDepth: number;
  /** Entry names, bytes. Nix 2.35: 255. */
  maxNameLength: number;
  /** Symlink targets, bytes. Nix 2.35: 4095. */
  maxTargetLength: number;
  /** Tags ("(", "type", "regular", …): all ≤ 10 bytes; Nix 2.35 reads at most 32. */
  maxTagLength: number;
  /** Reject names containing "~nix~case~hack~" like Lix does (macOS clients would rename them). */
  rejectCaseHackNames: boolean;
}

export const NAR_DEFAULT_LIMITS: Readonly<NarLimits> = Object.freeze({
  maxDepth: 64,
  maxNameLength: 255,
  maxTargetLength: 4095,
  maxTagLength: 32,
  rejectCaseHackNames: false,
});

/** Zero bytes that follow a string of `length` bytes. */
export function narPadding(length: number): number {
  return (8 - (length % 8)) % 8;
}

// ---------------------------------------------------------------------------------------------
// Byte strings

export function bytesToByteString(bytes: Uint8Array): ByteString {
  // TextDecoder("latin1") is windows-1252 in the WHATWG spec (0x80–0x9f differ): do it by hand.
  let s = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 4096) as unknown as number[]);
  }
  return s;
}

export function byteStringToBytes(s: ByteString): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) throw new RangeError(`not a byte string: code unit ${c} at index ${i}`);
    out[i] = c;
  }
  return out;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** A byte string for messages: decoded as UTF-8 when it is valid, with \xNN for anything odd. */
export function showByteString(s: ByteString): string {
  let text: string;
  try {
    text = strictUtf8.decode(byteStringToBytes(s));
  } catch {
    text = s.replace(/[\x80-\xff]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
  }
  return JSON.stringify(text).replace(/\\\\x([0-9a-f]{2})/g, "\\x$1");
}

// ---------------------------------------------------------------------------------------------
// Events

/** What every node event carries. */
export interface NarNodeInfo {
  /** "/" for the root, "/a/b" below it (byte string). */
  path: ByteString;
  /** The entry name ("" for the root). */
  name: ByteString;
  /** 0 for the root. */
  depth: number;
  /** NAR offset of the node's "(" token. */
  offset: number;
}

export interface NarDirectory extends NarNodeInfo {
  type: "directory";
}

export interface NarFile extends NarNodeInfo {
  type: "regular";
  executable: boolean;
  size: number;
  /** NAR offset of the first content byte (just after the u64 size), as in the `.ls`. */
  narOffset: number;
}

export interface NarSymlink extends NarNodeInfo {
  type: "symlink";
  target: ByteString;
}

export type NarNode = NarDirectory | NarFile | NarSymlink;

/**
 * Receives the parse as it happens, in NAR order. Every method is optional. Node objects are
 * fresh per node (a visitor may keep them). Events come before the bytes that follow them are
 * validated: an error later in the stream invalidates everything seen so far.
 */
export interface NarVisitor {
  /** A directory starts; its entries follow (sorted), then directoryEnd with the same object. */
  directory?(dir: NarDirectory): void;
  directoryEnd?(dir: NarDirectory): void;
  /** A regular file starts: its `size` content bytes follow as fileData pieces, then fileEnd. */
  file?(file: NarFile): void;
  /**
   * A piece of the current file's contents: a view (subarray) of a buffer the caller passed to
   * write(), valid as long as the caller leaves that buffer alone. `offset` = its NAR offset.
   * Never called with an empty piece; an empty file gets file + fileEnd only.
   */
  fileData?(bytes: Uint8Array, offset: number, file: NarFile): void;
  fileEnd?(file: NarFile): void;
  symlink?(link: NarSymlink): void;
}

/** A FormatError that also says where, for callers that map errors to responses. */
export class NarFormatError extends FormatError {
  readonly offset: number;
  readonly path: ByteString | undefined;
  constructor(code: string, message: string, offset: number, path: ByteString | undefined) {
    super(code, `invalid NAR at byte ${offset}${path === undefined ? "" : ` (entry ${showByteString(path)})`}: ${message}`);
    this.offset = offset;
    this.path = path;
  }
}

// ---------------------------------------------------------------------------------------------
// Parser

/** Token bytes, shared with the writer (nar-writer.ts). */
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
export const T_MAGIC = enc(NAR_MAGIC);
export const T_OPEN = enc("(");
export const T_CLOSE = enc(")");
export const T_TYPE = enc("type");
export const T_REGULAR = enc("regular");
export const T_SYMLINK = enc("symlink");
export const T_DIRECTORY = enc("directory");
export const T_EXECUTABLE = enc("executable");
export const T_CONTENTS = enc("contents");
export const T_TARGET = enc("target");
export const T_ENTRY = enc("entry");
export const T_NAME = enc("name");
export const T_NODE = enc("node");
const CASE_HACK = "~nix~case~hack~";
export const EMPTY = new Uint8Array(0);

// Byte-level phase: what the next bytes are.
const P_LEN = 0; // u64 length of a string
const P_STR = 1; // bytes of a (small) string, buffered
const P_PAD = 2; // zero padding
const P_DATA = 3; // file contents, passed through
const P_DONE = 4; // after the final ")" and its padding
type Phase = 0 | 1 | 2 | 3 | 4;

// Grammar state: which string is expected next.
const G_MAGIC = 0;
const G_OPEN = 1; // "(" of a node
const G_TYPE_TAG = 2; // "type"
const G_TYPE = 3; // "regular" | "symlink" | "directory"
const G_REG_TAG = 4; // "executable" | "contents"
const G_EXEC_VALUE = 5; // ""
const G_CONTENTS_TAG = 6; // "contents" (after executable)
const G_SIZE = 7; // u64 size, then contents
const G_REG_CLOSE = 8; // ")" after contents
const G_TARGET_TAG = 9; // "target"
const G_TARGET = 10; // the target
const G_LINK_CLOSE = 11; // ")" after the target
const G_DIR_ITEM = 12; // "entry" | ")"
const G_ENTRY_OPEN = 13; // "(" of an entry
const G_NAME_TAG = 14; // "name"
const G_NAME = 15; // the name
const G_NODE_TAG = 16; // "node"
const G_ENTRY_CLOSE = 17; // ")" of an entry
const G_END = 18; // nothing more

const EXPECTING: readonly string[] = [
  "the magic 'nix-archive-1'",
  "tag '('",
  "tag 'type'",
  "the node type",
  "tag 'executable' or 'contents'",
  "the (empty) executable marker value",
  "tag 'contents'",
  "the file size",
  "tag ')' closing the file",
  "tag 'target'",
  "the symlink target",
  "tag ')' closing the symlink",
  "tag 'entry' or ')'",
  "tag '(' opening the entry",
  "tag 'name'",
  "the entry name",
  "tag 'node'",
  "tag ')' closing the entry",
  "nothing",
];

/** The states that admit one fixed tag and then only move on: [that tag, the next state]. */
const FIXED_TAG_STEPS: ReadonlyMap<number, readonly [Uint8Array, number]> = new Map([
  [G_TYPE_TAG, [T_TYPE, G_TYPE]],
  [G_TARGET_TAG, [T_TARGET, G_TARGET]],
  [G_ENTRY_OPEN, [T_OPEN, G_NAME_TAG]],
  [G_NAME_TAG, [T_NAME, G_NAME]],
  [G_ENTRY_CLOSE, [T_CLOSE, G_DIR_ITEM]],
]);

interface DirFrame {
  dir: NarDirectory;
  prev: ByteString | null;
}

/** Whether b[s, s+n) is the token `want` (no subarray: views cost more than the compare). */
function isToken(b: Uint8Array, s: number, n: number, want: Uint8Array): boolean {
  if (n !== want.length) return false;
  for (let i = 0; i < n; i++) if (b[s + i] !== want[i]) return false;
  return true;
}

function showToken(t: Uint8Array): string {
  return showByteString(bytesToByteString(t));
}

function childPath(parent: ByteString, name: ByteString): ByteString {
  return parent === "/" ? "/" + name : parent + "/" + name;
}

/**
 * Strict streaming NAR parser. `write()` pieces of any size (≥ 0 bytes), then `end()`.
 * Throws NarFormatError (from write or end) at the first violation; after that it stays failed.
 */
export class NarParser {
  readonly limits: Readonly<NarLimits>;
  private readonly v: NarVisitor;
  private readonly onData: NarVisitor["fileData"];

  private phase: Phase = P_LEN;
  private g = G_MAGIC;
  /** Absolute offset of the first byte of the piece being written. */
  private base = 0;
  /** Absolute offset where the current string (its length field) started. */
  private tokStart = 0;
  private readonly lenBuf = new Uint8Array(8);
  private readonly tokBuf: Uint8Array;
  private have = 0;
  private need = 0;
  /** Content bytes or padding bytes still to come. */
  private left = 0;
  private failed: Error | undefined;
  private ended = false;

  // The node being parsed.
  private path: ByteString = "/";
  private name: ByteString = "";
  private depth = 0;
  private nodeOffset = 0;
  private executable = false;
  private file: NarFile | undefined;
  private readonly dirs: DirFrame[] = [];

  constructor(visitor: NarVisitor = {}, limits: Partial<NarLimits> = {}) {
    this.limits = Object.freeze({ ...NAR_DEFAULT_LIMITS, ...limits });
    const { maxDepth, maxTagLength, maxNameLength, maxTargetLength } = this.limits;
    for (const [key, value, min] of [["maxDepth", maxDepth, 1], ["maxTagLength", maxTagLength, 10], ["maxNameLength", maxNameLength, 1], ["maxTargetLength", maxTargetLength, 1]] as const) {
      // A limit below `min` would refuse every NAR (the longest tags have 10 bytes).
      if (!Number.isSafeInteger(value) || value < min) throw new RangeError(`NarParser: ${key} must be an integer ≥ ${min}, got ${value}`);
    }
    this.tokBuf = new Uint8Array(Math.max(T_MAGIC.length, maxTagLength, maxNameLength, maxTargetLength));
    this.v = visitor;
    this.onData = visitor.fileData?.bind(visitor);
  }

  /** Bytes consumed so far (= the NAR size once done). */
  get offset(): number {
    return this.base;
  }

  /** True once the root node and its padding are complete. */
  get done(): boolean {
    return this.phase === P_DONE;
  }

  write(chunk: Uint8Array): void {
    if (this.failed) throw this.failed;
    if (this.ended) throw new Error("NarParser.write() after end()");
    try {
      this.consume(chunk);
    } catch (err) {
      this.failed = err as Error;
      throw err;
    }
    this.base += chunk.length;
  }

  /** Declares the end of input; returns the NAR size. Throws nar.truncated when incomplete. */
  end(): number {
    if (this.failed) throw this.failed;
    if (this.phase !== P_DONE) {
      this.failed = this.truncated();
      throw this.failed;
    }
    this.ended = true;
    return this.base;
  }

  private consume(chunk: Uint8Array): void {
    const end = chunk.length;
    let pos = 0;
    while (pos < end) {
      switch (this.phase) {
        case P_DATA: {
          const n = Math.min(this.left, end - pos);
          if (this.onData) this.onData(chunk.subarray(pos, pos + n), this.base + pos, this.file!);
          pos += n;
          this.left -= n;
          if (this.left === 0) this.endFile();
          break;
        }
        case P_LEN: {
          if (this.have === 0) this.tokStart = this.base + pos;
          let lo: number, hi: number;
          if (this.have === 0 && end - pos >= 8) {
            lo = (chunk[pos]! | (chunk[pos + 1]! << 8) | (chunk[pos + 2]! << 16) | (chunk[pos + 3]! << 24)) >>> 0;
            hi = (chunk[pos + 4]! | (chunk[pos + 5]! << 8) | (chunk[pos + 6]! << 16) | (chunk[pos + 7]! << 24)) >>> 0;
            pos += 8;
          } else {
            const n = Math.min(8 - this.have, end - pos);
            this.lenBuf.set(chunk.subarray(pos, pos + n), this.have);
            this.have += n;
            pos += n;
            if (this.have < 8) break;
            this.have = 0;
            const b = this.lenBuf;
            lo = (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
            hi = (b[4]! | (b[5]! << 8) | (b[6]! << 16) | (b[7]! << 24)) >>> 0;
          }
          this.onLength(lo, hi, this.base + pos);
          break;
        }
        case P_STR: {
          if (this.have === 0 && end - pos >= this.need) {
            pos += this.need;
            this.onString(chunk, pos - this.need, this.need);
          } else {
            const n = Math.min(this.need - this.have, end - pos);
            this.tokBuf.set(chunk.subarray(pos, pos + n), this.have);
            this.have += n;
            pos += n;
            if (this.have === this.need) {
              this.have = 0;
              this.onString(this.tokBuf, 0, this.need);
            }
          }
          break;
        }
        case P_PAD: {
          const n = Math.min(this.left, end - pos);
          for (let i = pos; i < pos + n; i++) {
            if (chunk[i] !== 0) {
              throw this.error("nar.padding", `non-zero padding byte 0x${chunk[i]!.toString(16).padStart(2, "0")}`, this.base + i);
            }
          }
          pos += n;
          this.left -= n;
          if (this.left === 0) this.phase = this.g === G_END ? P_DONE : P_LEN;
          break;
        }
        case P_DONE:
          throw this.error("nar.trailing", `${end - pos} byte(s) after the end of the NAR`, this.base + pos, null);
      }
    }
  }

  /** A string's length field is complete; `at` = offset just after it. */
  private onLength(lo: number, hi: number, at: number): void {
    const g = this.g;
    if (g === G_SIZE) {
      if (hi > 0x1fffff) {
        throw this.error("nar.length", `file size ${(BigInt(hi) << 32n) | BigInt(lo)} is larger than 2^53-1`);
      }
      const size = hi * 0x100000000 + lo;
      const file: NarFile = {
        type: "regular",
        path: this.path,
        name: this.name,
        depth: this.depth,
        offset: this.nodeOffset,
        executable: this.executable,
        size,
        narOffset: at,
      };
      this.file = file;
      this.g = G_REG_CLOSE;
      this.v.file?.(file);
      if (size === 0) this.endFile();
      else {
        this.phase = P_DATA;
        this.left = size;
      }
      return;
    }
    const max = this.maxLength(g);
    if (hi !== 0 || lo > max) this.tooLong(g, (BigInt(hi) << 32n) | BigInt(lo), max);
    if (lo === 0) this.onString(EMPTY, 0, 0);
    else {
      this.phase = P_STR;
      this.need = lo;
    }
  }

  private maxLength(g: number): number {
    switch (g) {
      case G_MAGIC:
        return T_MAGIC.length;
      case G_NAME:
        return this.limits.maxNameLength;
      case G_TARGET:
        return this.limits.maxTargetLength;
      case G_EXEC_VALUE:
        return 0;
      default:
        return this.limits.maxTagLength;
    }
  }

  private tooLong(g: number, length: bigint, max: number): never {
    switch (g) {
      case G_MAGIC:
        throw this.error("nar.magic", `not a NAR: first string has length ${length}, expected '${NAR_MAGIC}'`, undefined, null);
      case G_NAME:
        throw this.error("nar.name.length", `entry name of ${length} bytes is longer than ${max}`);
      case G_TARGET:
        throw this.error("nar.target.length", `symlink target of ${length} bytes is longer than ${max}`);
      case G_EXEC_VALUE:
        throw this.error("nar.executable.value", `executable marker has a value of ${length} bytes, expected ""`);
      default:
        throw this.error("nar.token.length", `expected ${EXPECTING[g]}, got a string of ${length} bytes (tags are at most ${max})`);
    }
  }

  private endFile(): void {
    const file = this.file!;
    this.file = undefined;
    this.v.fileEnd?.(file);
    this.afterString(file.size);
  }

  /** Padding after a string of `length` bytes, then the next string (or the end). */
  private afterString(length: number): void {
    const pad = narPadding(length);
    if (pad !== 0) {
      this.phase = P_PAD;
      this.left = pad;
    } else {
      this.phase = this.g === G_END ? P_DONE : P_LEN;
    }
  }

  /** A complete string b[s, s+n) (valid during this call only) in grammar state this.g. */
  private onString(b: Uint8Array, s: number, n: number): void {
    switch (this.g) {
      case G_MAGIC:
        if (!isToken(b, s, n, T_MAGIC)) {
          throw this.error("nar.magic", `not a NAR: magic is ${showToken(b.subarray(s, s + n))}, expected '${NAR_MAGIC}'`, undefined, null);
        }
        this.g = G_OPEN;
        break;
      case G_OPEN:
        this.expect(b, s, n, T_OPEN);
        this.nodeOffset = this.tokStart;
        this.g = G_TYPE_TAG;
        break;
      case G_TYPE:
        if (isToken(b, s, n, T_REGULAR)) {
          this.executable = false;
          this.g = G_REG_TAG;
        } else if (isToken(b, s, n, T_DIRECTORY)) {
          const dir: NarDirectory = { type: "directory", path: this.path, name: this.name, depth: this.depth, offset: this.nodeOffset };
          this.dirs.push({ dir, prev: null });
          this.g = G_DIR_ITEM;
          this.v.directory?.(dir);
        } else if (isToken(b, s, n, T_SYMLINK)) {
          this.g = G_TARGET_TAG;
        } else {
          throw this.error("nar.type", `unknown node type ${showToken(b.subarray(s, s + n))}, expected 'regular', 'directory' or 'symlink'`);
        }
        break;
      case G_REG_TAG:
        if (isToken(b, s, n, T_EXECUTABLE)) this.g = G_EXEC_VALUE;
        else if (isToken(b, s, n, T_CONTENTS)) this.g = G_SIZE;
        else this.regularTagError(b, s, n);
        break;
      case G_EXEC_VALUE: // the length check admitted only ""
        this.executable = true;
        this.g = G_CONTENTS_TAG;
        break;
      case G_CONTENTS_TAG:
        if (isToken(b, s, n, T_CONTENTS)) this.g = G_SIZE;
        else if (isToken(b, s, n, T_EXECUTABLE)) throw this.error("nar.executable.duplicate", "tag 'executable' appears twice");
        else this.regularTagError(b, s, n);
        break;
      case G_REG_CLOSE:
        if (isToken(b, s, n, T_CLOSE)) this.closeNode();
        else if (isToken(b, s, n, T_EXECUTABLE)) throw this.error("nar.executable.after-contents", "tag 'executable' after 'contents'");
        else if (isToken(b, s, n, T_CONTENTS)) throw this.error("nar.contents.duplicate", "tag 'contents' appears twice");
        else this.expect(b, s, n, T_CLOSE);
        break;
      case G_TARGET: {
        const t = b.subarray(s, s + n);
        if (n === 0) throw this.error("nar.target.empty", "empty symlink target");
        if (t.indexOf(0) !== -1) throw this.error("nar.target.nul", `symlink target contains a NUL byte at index ${t.indexOf(0)}`);
        const link: NarSymlink = {
          type: "symlink",
          path: this.path,
          name: this.name,
          depth: this.depth,
          offset: this.nodeOffset,
          target: bytesToByteString(t),
        };
        this.g = G_LINK_CLOSE;
        this.v.symlink?.(link);
        break;
      }
      case G_LINK_CLOSE:
        this.expect(b, s, n, T_CLOSE);
        this.closeNode();
        break;
      case G_DIR_ITEM:
        if (isToken(b, s, n, T_ENTRY)) this.g = G_ENTRY_OPEN;
        else if (isToken(b, s, n, T_CLOSE)) {
          const { dir } = this.dirs.pop()!;
          this.v.directoryEnd?.(dir);
          this.closeNode();
        } else this.expect(b, s, n, T_ENTRY);
        break;
      case G_NAME:
        this.acceptName(b.subarray(s, s + n));
        this.g = G_NODE_TAG;
        break;
      case G_NODE_TAG: {
        this.expect(b, s, n, T_NODE);
        const depth = this.dirs.length; // the new node's depth: one below the innermost directory
        if (depth >= this.limits.maxDepth) {
          throw this.error("nar.depth", `directory nesting reaches ${depth}, the limit is below ${this.limits.maxDepth}`);
        }
        this.depth = depth;
        this.g = G_OPEN;
        break;
      }
      case G_TYPE_TAG:
      case G_TARGET_TAG:
      case G_ENTRY_OPEN:
      case G_NAME_TAG:
      case G_ENTRY_CLOSE: {
        const [tag, next] = FIXED_TAG_STEPS.get(this.g)!;
        this.expect(b, s, n, tag);
        this.g = next;
        break;
      }
    }
    this.afterString(n);
  }

  private acceptName(t: Uint8Array): void {
    const frame = this.dirs[this.dirs.length - 1]!;
    const dirPath = frame.dir.path;
    if (t.length === 0) throw this.error("nar.name.empty", "empty entry name", undefined, dirPath);
    const name = bytesToByteString(t);
    const path = childPath(dirPath, name);
    if (name === "." || name === "..") throw this.error("nar.name.dot", `entry name ${showByteString(name)} is not allowed`, undefined, dirPath);
    if (t.indexOf(0x2f) !== -1) throw this.error("nar.name.slash", `entry name ${showByteString(name)} contains '/'`, undefined, dirPath);
    if (t.indexOf(0) !== -1) throw this.error("nar.name.nul", `entry name ${showByteString(name)} contains a NUL byte`, undefined, dirPath);
    if (this.limits.rejectCaseHackNames && name.includes(CASE_HACK)) {
      throw this.error("nar.name.case-hack", `entry name contains the case-hack suffix '${CASE_HACK}'`, undefined, path);
    }
    if (frame.prev !== null) {
      if (name === frame.prev) throw this.error("nar.duplicate", `duplicate entry name ${showByteString(name)}`, undefined, path);
      if (name < frame.prev) {
        throw this.error("nar.unsorted", `directory is not sorted: ${showByteString(name)} comes after ${showByteString(frame.prev)}`, undefined, path);
      }
    }
    frame.prev = name;
    this.name = name;
    this.path = path;
  }

  /** The node that just got its ")": back to the enclosing entry, or the end. */
  private closeNode(): void {
    const n = this.dirs.length;
    if (n === 0) {
      this.g = G_END;
      return;
    }
    const dir = this.dirs[n - 1]!.dir;
    this.path = dir.path;
    this.name = dir.name;
    this.depth = dir.depth;
    this.g = G_ENTRY_CLOSE;
  }

  private regularTagError(b: Uint8Array, s: number, n: number): never {
    if (isToken(b, s, n, T_CLOSE)) throw this.error("nar.contents.missing", "regular file without tag 'contents'");
    throw this.error("nar.token", `expected ${EXPECTING[this.g]}, got ${showToken(b.subarray(s, s + n))}`);
  }

  private expect(b: Uint8Array, s: number, n: number, want: Uint8Array): void {
    if (!isToken(b, s, n, want)) throw this.error("nar.token", `expected ${EXPECTING[this.g]}, got ${showToken(b.subarray(s, s + n))}`);
  }

  private truncated(): NarFormatError {
    let what: string;
    switch (this.phase) {
      case P_DATA:
        what = `the contents of the file (${this.file!.size - this.left} of ${this.file!.size} bytes read)`;
        break;
      case P_PAD:
        what = `padding (${this.left} byte(s) missing)`;
        break;
      case P_LEN:
        what = this.have === 0 ? EXPECTING[this.g]! : `the length field of ${EXPECTING[this.g]} (${this.have} of 8 bytes read)`;
        break;
      default:
        what = `${EXPECTING[this.g]} (${this.have} of ${this.need} bytes read)`;
    }
    return this.error("nar.truncated", `truncated: the input ends while expecting ${what}`, this.base, this.g === G_MAGIC ? null : undefined);
  }

  /** offset: default = start of the current string; path: default = the current node, null = none. */
  private error(code: string, message: string, offset?: number, path?: ByteString | null): NarFormatError {
    return new NarFormatError(code, message, offset ?? this.tokStart, path === null ? undefined : (path ?? this.path));
  }
}

// ---------------------------------------------------------------------------------------------
// Async conveniences

export type NarEvent =
  | NarDirectory
  | { type: "directory-end"; dir: NarDirectory }
  | NarFile
  | { type: "file-data"; bytes: Uint8Array; offset: number; file: NarFile }
  | { type: "file-end"; file: NarFile }
  | NarSymlink;

/**
 * The parse as a stream of events (node objects for starts; `file-data` pieces are views of
 * the source's chunks). Events of a chunk are yielded before an error found later in it.
 */
export async function* readNar(source: AsyncIterable<Uint8Array>, limits?: Partial<NarLimits>): AsyncGenerator<NarEvent> {
  let queue: NarEvent[] = [];
  const parser = new NarParser(
    {
      directory: (dir) => queue.push(dir),
      directoryEnd: (dir) => queue.push({ type: "directory-end", dir }),
      file: (file) => queue.push(file),
      fileData: (bytes, offset, file) => queue.push({ type: "file-data", bytes, offset, file }),
      fileEnd: (file) => queue.push({ type: "file-end", file }),
      symlink: (link) => queue.push(link),
    },
    limits,
  );
  const drain = function* (): Generator<NarEvent> {
    const events = queue;
    queue = [];
    yield* events;
  };
  for await (const chunk of source) {
    try {
      parser.write(chunk);
    } catch (err) {
      yield* drain();
      throw err;
    }
    yield* drain();
  }
  parser.end();
}

/** Reads a whole NAR and checks it; resolves with its size, rejects with NarFormatError. */
export async function validateNar(source: AsyncIterable<Uint8Array>, limits?: Partial<NarLimits>): Promise<{ narSize: number }> {
  const parser = new NarParser({}, limits);
  for await (const chunk of source) parser.write(chunk);
  return { narSize: parser.end() };
}
