// `.narinfo` text: parse strictly, write exactly what Nix writes (docs/nix-protocol.md §3).
//
// Strict where Nix's own parser (NarInfo::NarInfo, libstore/nar-info.cc) would misread or choke,
// so that anything we accept and serve again parses the same in every client: LF line ends only,
// a final LF, exactly ": " after every key (an empty value is `Key: `), every store path, hash,
// size, CA and signature valid. Where Nix is lenient in a harmless way we are too: fields in any
// order, References unsorted or with repeated spaces, hashes in any encoding Nix reads,
// Compression missing or empty meaning bzip2, `Deriver: unknown-deriver` meaning none.
//
// Duplicates: Nix lets `Sig:` repeat and lets the last line of most other keys win. A second
// `CA:` or non-empty `References:` makes Nix call the file corrupt; "last wins" for the others is
// an ambiguity a server should not pass on. So every known key except `Sig` may appear once.
//
// Unknown keys (decision): Nix ignores them, so they are harmless to clients, and dropping them
// would lose data other tools put there. They are kept in `extra` in their order and written
// after all known keys, so a narinfo round-trips (only their position may move). Their values
// must still be one clean line; the number of them is limited.
//
// Canonical values are normalised while parsing: hashes are kept as bytes and written in nix32,
// CA is re-rendered with a nix32 hash, references and signatures become sorted sets. For the
// narinfos Nix writes, formatNarInfo(parseNarInfo(text)) === text.
import { FormatError } from "./errors.ts";
import { formatHash, parseHash, type Hash } from "./hash.ts";
import { parseSignature } from "./signing.ts";
import {
  DEFAULT_STORE_DIR,
  compareBytes,
  formatContentAddress,
  parseContentAddress,
  parseStorePath,
  parseStorePathBaseName,
} from "./store-path.ts";

export interface NarInfo {
  /** Full path, e.g. /nix/store/<hash>-<name>. */
  storePath: string;
  /** Where the (compressed) NAR is, relative to the cache root or absolute. */
  url: string;
  compression: string;
  /** Hash of the compressed file; nobody verifies it. sha256. */
  fileHash?: Hash;
  fileSize?: number;
  /** Hash of the uncompressed NAR; sha256. */
  narHash: Hash;
  narSize: number;
  /** Base names (<hash>-<name>), sorted bytewise, no duplicates. */
  references: string[];
  /** Base name of the .drv. */
  deriver?: string;
  system?: string;
  /** `<keyname>:<base64 sig>`, sorted, no duplicates. */
  sigs: string[];
  /** Content address in canonical form (nix32 hash), e.g. `fixed:r:sha256:…`. */
  ca?: string;
  /** Unknown keys, in the order they came. */
  extra: Array<[string, string]>;
}

/**
 * Largest narinfo accepted, in characters (check the byte length against it before decoding).
 * A narinfo is a few hundred bytes, but buildEnv-style paths (texlive, big Python envs) refer
 * to thousands of paths at ~55 bytes each; 1 MiB covers 16k references and keeps a narinfo
 * within one NATS message.
 */
export const NARINFO_MAX_BYTES = 1024 * 1024;
/** More references than this is not a real store path. */
export const NARINFO_MAX_REFERENCES = 16384;
/** One per signing key; caches rarely have more than a handful. */
export const NARINFO_MAX_SIGS = 64;
/** Unknown keys kept in `extra`. */
export const NARINFO_MAX_EXTRA_FIELDS = 64;
/** Longest URL, System or unknown value. */
export const NARINFO_MAX_VALUE_LENGTH = 4096;

/** Compression names Nix's makeDecompressionSink knows (docs/nix-protocol.md §3.2, §6.1). */
export const NARINFO_COMPRESSIONS: ReadonlySet<string> = new Set([
  "none", "xz", "bzip2", "zstd", "br", "gzip", "lz4", "lzip", "lzma", "lzop", "compress", "grzip", "lrzip",
]);

/** Keys that may appear at most once (everything known but `Sig`). */
const SINGLE_KEYS = new Set([
  "StorePath", "URL", "Compression", "FileHash", "FileSize", "NarHash", "NarSize", "References", "Deriver", "System", "CA",
]);

const CONTROL = /[\x00-\x1f\x7f]/;
const DECIMAL = /^(0|[1-9][0-9]*)$/;

export interface ParseNarInfoOptions {
  storeDir?: string;
}

export function parseNarInfo(text: string, options: ParseNarInfoOptions = {}): NarInfo {
  const storeDir = options.storeDir ?? DEFAULT_STORE_DIR;
  if (text.length > NARINFO_MAX_BYTES) {
    throw new FormatError("narinfo.too-large", `narinfo has ${text.length} characters, at most ${NARINFO_MAX_BYTES} are accepted`);
  }
  const cr = text.indexOf("\r");
  if (cr >= 0) {
    throw new FormatError(
      "narinfo.crlf",
      `narinfo line ${lineNumberAt(text, cr)} contains a carriage return: lines must end in LF only (Nix keeps the CR in the value)`,
    );
  }
  if (text.length === 0) throw new FormatError("narinfo.empty", "narinfo is empty");
  if (!text.endsWith("\n")) {
    throw new FormatError("narinfo.final-newline", `narinfo line ${lineNumberAt(text, text.length - 1)} does not end in a newline (Nix then calls the file corrupt)`);
  }

  let storePath: string | undefined;
  let url: string | undefined;
  let compression: string | undefined;
  let fileHash: Hash | undefined;
  let fileSize: number | undefined;
  let narHash: Hash | undefined;
  let narSize: number | undefined;
  let references: string[] = [];
  let deriver: string | undefined;
  let system: string | undefined;
  let ca: string | undefined;
  const sigs = new Set<string>();
  const extra: Array<[string, string]> = [];
  const seen = new Map<string, number>();

  let lineNo = 0;
  for (let pos = 0; pos < text.length; ) {
    lineNo++;
    const eol = text.indexOf("\n", pos);
    const line = text.slice(pos, eol);
    pos = eol + 1;

    const colon = line.indexOf(":");
    if (colon < 0) {
      throw new FormatError("narinfo.separator", `narinfo line ${lineNo} ${quote(line)} is not of the form 'Key: value'`);
    }
    const key = line.slice(0, colon);
    if (line.charCodeAt(colon + 1) !== 0x20) {
      throw new FormatError(
        "narinfo.separator",
        `narinfo line ${lineNo} ${quote(line)}: the ':' after '${key}' must be followed by one space, also when the value is empty ('${key}: ')`,
      );
    }
    if (key.length === 0 || /[\s\x00-\x1f\x7f]/.test(key)) {
      throw new FormatError("narinfo.key", `narinfo line ${lineNo} has an invalid key ${quote(key)}`);
    }
    const value = line.slice(colon + 2);
    if (CONTROL.test(value)) {
      throw new FormatError("narinfo.control-char", `narinfo line ${lineNo} (${key}) contains a control character`);
    }
    if (SINGLE_KEYS.has(key)) {
      const first = seen.get(key);
      if (first !== undefined) {
        throw new FormatError("narinfo.duplicate", `narinfo has '${key}' twice (lines ${first} and ${lineNo}); it may appear only once`);
      }
      seen.set(key, lineNo);
    }
    const field = (code: string, what: string, fn: () => void) => {
      try {
        fn();
      } catch (err) {
        if (!(err instanceof FormatError)) throw err;
        throw new FormatError(code, `narinfo line ${lineNo} (${what}): ${err.message}`, { cause: err });
      }
    };

    switch (key) {
      case "StorePath":
        field("narinfo.store-path", key, () => void parseStorePath(value, storeDir));
        storePath = value;
        break;
      case "URL":
        if (value.length === 0) throw new FormatError("narinfo.url", `narinfo line ${lineNo}: URL is empty`);
        if (/\s/.test(value) || value.length > NARINFO_MAX_VALUE_LENGTH) {
          throw new FormatError("narinfo.url", `narinfo line ${lineNo}: URL ${quote(value)} contains white space or is longer than ${NARINFO_MAX_VALUE_LENGTH} characters`);
        }
        url = value;
        break;
      case "Compression":
        // Nix: missing or empty means bzip2.
        compression = value === "" ? "bzip2" : value;
        if (!NARINFO_COMPRESSIONS.has(compression)) {
          throw new FormatError(
            "narinfo.compression",
            `narinfo line ${lineNo}: unknown Compression ${quote(value)} (known: ${[...NARINFO_COMPRESSIONS].join(", ")})`,
          );
        }
        break;
      case "FileHash":
        field("narinfo.file-hash", key, () => void (fileHash = parseSha256(value)));
        break;
      case "FileSize":
        field("narinfo.file-size", key, () => void (fileSize = parseSize(value)));
        break;
      case "NarHash":
        field("narinfo.nar-hash", key, () => void (narHash = parseSha256(value)));
        break;
      case "NarSize":
        field("narinfo.nar-size", key, () => void (narSize = parseSize(value)));
        if (narSize === 0) throw new FormatError("narinfo.nar-size", `narinfo line ${lineNo}: NarSize is 0 (Nix calls such a file corrupt)`);
        break;
      case "References": {
        // Nix splits on single spaces and skips empty tokens, then keeps a sorted set.
        const refs = value.split(" ").filter((r) => r !== "");
        if (refs.length > NARINFO_MAX_REFERENCES) {
          throw new FormatError("narinfo.references", `narinfo line ${lineNo}: ${refs.length} references, at most ${NARINFO_MAX_REFERENCES} are accepted`);
        }
        for (const r of refs) field("narinfo.references", key, () => void parseStorePathBaseName(r, storeDir));
        references = sortedUnique(refs);
        break;
      }
      case "Deriver":
        if (value !== "unknown-deriver") {
          field("narinfo.deriver", key, () => void parseStorePathBaseName(value, storeDir));
          deriver = value;
        }
        break;
      case "System":
        if (value.length > NARINFO_MAX_VALUE_LENGTH) throw new FormatError("narinfo.system", `narinfo line ${lineNo}: System is too long`);
        system = value;
        break;
      case "Sig":
        // Malformed Sig lines break clients (a wrong-length one for a trusted key name is a hard
        // error in 2.8; from 2.34 an empty name or payload makes the whole narinfo corrupt).
        field("narinfo.sig", key, () => void parseSignature(value));
        sigs.add(value);
        if (sigs.size > NARINFO_MAX_SIGS) throw new FormatError("narinfo.sig", `narinfo has more than ${NARINFO_MAX_SIGS} signatures`);
        break;
      case "CA":
        field("narinfo.ca", key, () => void (ca = formatContentAddress(parseContentAddress(value))));
        break;
      default:
        if (value.length > NARINFO_MAX_VALUE_LENGTH) {
          throw new FormatError("narinfo.extra", `narinfo line ${lineNo}: the value of unknown key '${key}' is longer than ${NARINFO_MAX_VALUE_LENGTH} characters`);
        }
        extra.push([key, value]);
        if (extra.length > NARINFO_MAX_EXTRA_FIELDS) {
          throw new FormatError("narinfo.extra", `narinfo has more than ${NARINFO_MAX_EXTRA_FIELDS} unknown keys`);
        }
    }
  }

  if (storePath === undefined) throw new FormatError("narinfo.missing-field", "narinfo has no StorePath");
  if (url === undefined) throw new FormatError("narinfo.missing-field", "narinfo has no URL");
  if (narHash === undefined) throw new FormatError("narinfo.missing-field", "narinfo has no NarHash");
  if (narSize === undefined) throw new FormatError("narinfo.missing-field", "narinfo has no NarSize");

  const info: NarInfo = {
    storePath,
    url,
    compression: compression ?? "bzip2",
    narHash,
    narSize,
    references,
    sigs: [...sigs].sort(compareBytes),
    extra,
  };
  if (fileHash !== undefined) info.fileHash = fileHash;
  if (fileSize !== undefined) info.fileSize = fileSize;
  if (deriver !== undefined) info.deriver = deriver;
  if (system !== undefined) info.system = system;
  if (ca !== undefined) info.ca = ca;
  return info;
}

/**
 * The text Nix's NarInfo::to_string writes: StorePath, URL, Compression, FileHash, FileSize,
 * NarHash, NarSize, References (with its trailing space when empty), Deriver, System, Sig…, CA;
 * then our unknown keys. Hashes in nix32. FileHash/FileSize only when known (as Nix ≥ 2.9;
 * 2.8 clients read files without them fine). Refuses values that would corrupt the file.
 */
export function formatNarInfo(info: NarInfo): string {
  checkLine("StorePath", info.storePath);
  checkLine("URL", info.url);
  checkLine("Compression", info.compression);
  if (info.url === "") throw new FormatError("narinfo.url", `narinfo of ${info.storePath}: URL is empty`);
  if (info.narHash.algorithm !== "sha256") {
    throw new FormatError("narinfo.nar-hash", `narinfo of ${info.storePath}: NarHash must be sha256, not ${info.narHash.algorithm}`);
  }
  if (!Number.isSafeInteger(info.narSize) || info.narSize <= 0) {
    throw new FormatError("narinfo.nar-size", `narinfo of ${info.storePath}: NarSize must be a positive integer, got ${info.narSize}`);
  }
  let s = `StorePath: ${info.storePath}\nURL: ${info.url}\nCompression: ${info.compression}\n`;
  if (info.fileHash !== undefined) s += `FileHash: ${formatHash(info.fileHash, "nix32")}\n`;
  if (info.fileSize !== undefined) {
    if (!Number.isSafeInteger(info.fileSize) || info.fileSize < 0) {
      throw new FormatError("narinfo.file-size", `narinfo of ${info.storePath}: FileSize must be a non-negative integer, got ${info.fileSize}`);
    }
    s += `FileSize: ${info.fileSize}\n`;
  }
  s += `NarHash: ${formatHash(info.narHash, "nix32")}\nNarSize: ${info.narSize}\n`;
  const refs = sortedUnique(info.references);
  for (const r of refs) checkToken("References", r);
  s += `References: ${refs.join(" ")}\n`;
  if (info.deriver !== undefined) {
    checkToken("Deriver", info.deriver);
    s += `Deriver: ${info.deriver}\n`;
  }
  if (info.system !== undefined && info.system !== "") {
    checkLine("System", info.system);
    s += `System: ${info.system}\n`;
  }
  for (const sig of sortedUnique(info.sigs)) {
    checkLine("Sig", sig);
    s += `Sig: ${sig}\n`;
  }
  if (info.ca !== undefined) {
    checkLine("CA", info.ca);
    s += `CA: ${info.ca}\n`;
  }
  for (const [key, value] of info.extra) {
    if (key === "" || /[\s:\x00-\x1f\x7f]/.test(key)) throw new FormatError("narinfo.key", `narinfo of ${info.storePath}: invalid key ${quote(key)}`);
    checkLine(key, value);
    s += `${key}: ${value}\n`;
  }
  return s;
}

/** Nix reads narinfo hashes with parseAnyPrefixed (the algorithm must be named); it writes only sha256. */
function parseSha256(value: string): Hash {
  const hash = parseHash(value);
  if (hash.algorithm !== "sha256") throw new FormatError("hash.algorithm", `hash '${value}' is ${hash.algorithm}, expected sha256`);
  return hash;
}

function parseSize(value: string): number {
  if (!DECIMAL.test(value)) throw new FormatError("narinfo.size", `${quote(value)} is not a decimal number`);
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new FormatError("narinfo.size", `${value} is larger than ${Number.MAX_SAFE_INTEGER}`);
  return n;
}

/** Sorted bytewise without duplicates; returns the input itself when it already is (hot path). */
function sortedUnique(items: string[]): string[] {
  let ok = true;
  for (let i = 1; i < items.length; i++) {
    if (!(items[i - 1]! < items[i]!)) {
      ok = false;
      break;
    }
  }
  return ok ? items : [...new Set(items)].sort(compareBytes);
}

function checkLine(key: string, value: string): void {
  if (CONTROL.test(value)) throw new FormatError("narinfo.control-char", `narinfo value of '${key}' contains a line break or control character`);
}

function checkToken(key: string, value: string): void {
  if (value === "" || /[\s\x00-\x1f\x7f]/.test(value)) throw new FormatError("narinfo.control-char", `narinfo ${key} entry ${quote(value)} is empty or contains white space`);
}

function lineNumberAt(text: string, index: number): number {
  let n = 1;
  for (let i = text.indexOf("\n"); i >= 0 && i < index; i = text.indexOf("\n", i + 1)) n++;
  return n;
}

function quote(s: string): string {
  return JSON.stringify(s.length > 100 ? `${s.slice(0, 100)}…` : s);
}
