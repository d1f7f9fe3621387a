// Talking to the gateway the way `nix copy --to http://…` does, for integration tests: PUT the
// (compressed) NAR under its FileHash, then the narinfo. Also small tools to read answers.
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { request } from "node:http";
import { brotliCompressSync, brotliDecompressSync, gunzipSync, zstdCompressSync } from "node:zlib";
import { sha256Hash } from "../../shared/hash.ts";
import { formatNarInfo, type NarInfo } from "../../shared/narinfo.ts";
import { NIX_BASE32_ALPHABET, encodeNixBase32 } from "../../shared/nixbase32.ts";
import { signNarInfo, type SecretKey } from "../../shared/signing.ts";

export function sha256(bytes: Uint8Array): Uint8Array {
  return createHash("sha256").update(bytes).digest();
}

export function nix32Sha256(bytes: Uint8Array): string {
  return encodeNixBase32(sha256(bytes));
}

/** A random (valid) store path hash part. */
export function randomHashPart(): string {
  const r = randomBytes(32);
  let s = "";
  for (let i = 0; i < 32; i++) s += NIX_BASE32_ALPHABET[r[i]! % 32];
  return s;
}

export type Compression = "none" | "xz" | "zstd" | "bzip2" | "gzip" | "br";

const EXTENSION: Record<Compression, string> = { none: "", xz: ".xz", zstd: ".zst", bzip2: ".bz2", gzip: "", br: ".br" };

/** Runs a command-line compressor on `input` (for what node:zlib lacks or, for zstd, reads only in part). */
function runTool(tool: string, args: string[], input: Uint8Array): Uint8Array {
  const r = spawnSync(tool, args, { input, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`${tool} ${args.join(" ")} failed: ${r.stderr}`);
  return new Uint8Array(r.stdout);
}

/**
 * Decodes a zstd stream of one or more frames with the zstd tool: node:zlib (Node 24) stops after
 * the first frame when that frame is small, so it cannot check a concatenation of frames.
 */
export function zstdDecompress(data: Uint8Array): Uint8Array {
  return runTool("zstd", ["-dc"], data);
}

interface Codec {
  compress(data: Uint8Array): Uint8Array;
  decompress(data: Uint8Array): Uint8Array;
}

const CODECS: Record<Compression, Codec> = {
  none: { compress: (data) => data, decompress: (data) => data },
  xz: { compress: (data) => runTool("xz", ["-c"], data), decompress: (data) => runTool("xz", ["-dc"], data) },
  zstd: { compress: (data) => zstdCompressSync(data), decompress: zstdDecompress },
  bzip2: { compress: (data) => runTool("bzip2", ["-c"], data), decompress: (data) => runTool("bzip2", ["-dc"], data) },
  gzip: { compress: (data) => runTool("gzip", ["-c"], data), decompress: (data) => gunzipSync(data) },
  br: { compress: (data) => brotliCompressSync(data), decompress: (data) => brotliDecompressSync(data) },
};

export function compress(data: Uint8Array, compression: Compression): Uint8Array {
  return CODECS[compression].compress(data);
}

export function decompress(data: Uint8Array, compression: Compression): Uint8Array {
  return CODECS[compression].decompress(data);
}

/**
 * Byte equality with a short message (assert.deepEqual on large arrays spends minutes building
 * its diff).
 */
export function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what = "bytes"): void {
  if (Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.length))) return;
  let i = 0;
  while (i < actual.length && i < expected.length && actual[i] === expected[i]) i++;
  throw new Error(`${what}: ${actual.length} bytes, expected ${expected.length}; first difference at offset ${i}`);
}

export interface PathUpload {
  storePath: string;
  hashPart: string;
  /** The uncompressed NAR. */
  nar: Uint8Array;
  narHash32: string;
  /** What is PUT to nar/…: the compressed file. */
  file: Uint8Array;
  /** `<FileHash>.nar<ext>`. */
  fileName: string;
  narinfo: NarInfo;
  narinfoText: string;
}

/** Everything Nix would send for one path; nothing is sent. */
export function preparePath(options: {
  nar: Uint8Array;
  name?: string;
  hashPart?: string;
  compression?: Compression;
  references?: string[];
  deriver?: string;
  ca?: string;
  storeDir?: string;
  signWith?: SecretKey;
  extraSigs?: string[];
}): PathUpload {
  const storeDir = options.storeDir ?? "/nix/store";
  const hashPart = options.hashPart ?? randomHashPart();
  const storePath = `${storeDir}/${hashPart}-${options.name ?? "test-path"}`;
  const compression = options.compression ?? "none";
  const file = compress(options.nar, compression);
  const fileHash = sha256(file);
  const fileName = `${encodeNixBase32(fileHash)}.nar${EXTENSION[compression]}`;
  let narinfo: NarInfo = {
    storePath,
    url: `nar/${fileName}`,
    compression,
    fileHash: sha256Hash(fileHash),
    fileSize: file.length,
    narHash: sha256Hash(sha256(options.nar)),
    narSize: options.nar.length,
    references: [...(options.references ?? [])].sort(),
    sigs: [...(options.extraSigs ?? [])],
    extra: [],
  };
  if (options.deriver) narinfo.deriver = options.deriver;
  if (options.ca) narinfo.ca = options.ca;
  if (options.signWith) narinfo = signNarInfo(narinfo, options.signWith, storeDir);
  return { storePath, hashPart, nar: options.nar, narHash32: nix32Sha256(options.nar), file, fileName, narinfo, narinfoText: formatNarInfo(narinfo) };
}

export interface HttpAnswer {
  status: number;
  headers: Headers;
  body: Uint8Array;
  text: string;
}

export type HttpInit = Omit<RequestInit, "body"> & { body?: string | Uint8Array };

export async function http(url: string, init: HttpInit = {}): Promise<HttpAnswer> {
  const res = await fetch(url, init as RequestInit);
  const body = new Uint8Array(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, body, text: new TextDecoder().decode(body) };
}

/** Sum of a Prometheus series on the gateway's /metrics, over the label sets that include `labels`. */
export async function gatewayMetric(base: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = (await http(`${base}/metrics`)).text;
  let sum = 0;
  for (const line of text.split("\n")) {
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const set = m[2] ?? "";
    if (Object.entries(labels).every(([k, v]) => set.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

export function authHeaders(token: string | undefined): Record<string, string> {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** PUT nar/…, then the narinfo; returns both answers. */
export async function uploadPath(base: string, up: PathUpload, token?: string): Promise<{ nar: HttpAnswer; narinfo: HttpAnswer }> {
  const nar = await http(`${base}/nar/${up.fileName}`, { method: "PUT", body: up.file, headers: { "Content-Type": "application/x-nix-nar", ...authHeaders(token) } });
  const narinfo = await http(`${base}/${up.hashPart}.narinfo`, { method: "PUT", body: up.narinfoText, headers: { "Content-Type": "text/x-nix-narinfo", ...authHeaders(token) } });
  return { nar, narinfo };
}

export interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** The response ended early (connection cut, or a body shorter than Content-Length). */
  cut: boolean;
}

/**
 * A GET with node:http, reporting a cut connection instead of throwing: how a test tells "the
 * server refused to send wrong bytes" from a clean answer.
 */
export function rawGet(url: string, headers: Record<string, string> = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, agent: false }, (res) => {
      const pieces: Buffer[] = [];
      let cut = false;
      res.on("data", (d: Buffer) => pieces.push(d));
      res.on("aborted", () => (cut = true));
      res.on("error", () => (cut = true));
      res.on("close", () => {
        const body = Buffer.concat(pieces);
        const length = res.headers["content-length"];
        if (!res.complete || (length !== undefined && Number(length) !== body.length)) cut = true;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, cut });
      });
    });
    req.on("error", reject);
    req.end();
  });
}
