// Request bodies as bounded streams: every upload is limited in size (checked against
// Content-Length before a byte is read, and counted while streaming, since Content-Length can lie
// or be absent with chunked encoding), in idle time (a client that stops sending mid-body holds a
// socket and a staging object: drop it), and transport-decoded when the client compressed it
// (`Content-Encoding`, Nix ≥ 2.32 with narinfo/ls/log-compression, docs/nix-protocol.md §6.3).
import type { IncomingMessage, ServerResponse } from "node:http";
import { decompressStream } from "../../shared/node/decompress.ts";
import { HttpError, tooLarge } from "./http-errors.ts";

/** A body that stops arriving for this long is abandoned (slow-loris protection). */
export const BODY_IDLE_TIMEOUT_MS = 60_000;

export interface BodyOptions {
  /** Most bytes accepted on the wire. */
  limit: number;
  /** For messages: "NAR upload", "narinfo"… */
  what: string;
  idleTimeoutMs?: number;
  /** Called with the size of every piece received (metrics). */
  onBytes?: (n: number) => void;
}

// Requests with `Expect: 100-continue` (curl sends it for every non-empty PUT body, docs/nix-protocol.md §7.1) get
// their `100 Continue` only when a handler starts reading the body: a PUT refused before that
// (auth, name, declared size) is answered at once, and the client never sends the body.
const pendingContinue = new WeakMap<IncomingMessage, ServerResponse>();

export function deferContinue(req: IncomingMessage, res: ServerResponse): void {
  pendingContinue.set(req, res);
}

function sendContinue(req: IncomingMessage): void {
  const res = pendingContinue.get(req);
  if (res === undefined) return;
  pendingContinue.delete(req);
  if (!res.headersSent) res.writeContinue();
}

/** Throws 413 when the declared length is over the limit: refuse before reading anything. */
export function checkDeclaredLength(req: IncomingMessage, limit: number, what: string): void {
  const declared = req.headers["content-length"];
  if (declared === undefined) return;
  if (!/^\d+$/.test(declared)) throw new HttpError(400, "http.content-length", `invalid Content-Length ${JSON.stringify(declared)}`);
  if (Number(declared) > limit) throw tooLarge(`${what} (Content-Length ${declared})`, limit);
}

/** The raw body, piece by piece, within the limits; throws 413 as soon as it grows past `limit`. */
export async function* rawBody(req: IncomingMessage, options: BodyOptions): AsyncGenerator<Uint8Array> {
  checkDeclaredLength(req, options.limit, options.what);
  const idleMs = options.idleTimeoutMs ?? BODY_IDLE_TIMEOUT_MS;
  let received = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      req.destroy(new HttpError(408, "http.body-idle", `${options.what}: no data for ${Math.round(idleMs / 1000)} s, upload abandoned`));
    }, idleMs);
    timer.unref();
  };
  arm();
  sendContinue(req);
  try {
    for await (const piece of req as AsyncIterable<Buffer>) {
      arm();
      received += piece.length;
      if (received > options.limit) throw tooLarge(options.what, options.limit);
      options.onBytes?.(piece.length);
      yield piece;
    }
  } finally {
    clearTimeout(timer);
  }
  // A body shorter than its Content-Length is cut off; Node reports that as an 'aborted' error
  // in the loop above, so arriving here means the body is complete.
}

/** Names of `Content-Encoding` we decode, mapped to shared/node/decompress.ts's names. */
const CONTENT_ENCODINGS: Record<string, string> = {
  identity: "none",
  xz: "xz",
  br: "br",
  zstd: "zstd",
  gzip: "gzip",
  "x-gzip": "gzip",
  bzip2: "bzip2",
};

/**
 * The body with its `Content-Encoding` undone, limited to `decodedLimit` bytes after decoding
 * (a decompression bomb is refused with 413, not buffered).
 */
export function decodedBody(req: IncomingMessage, options: BodyOptions & { decodedLimit?: number }): AsyncIterable<Uint8Array> {
  checkDeclaredLength(req, options.limit, options.what);
  const encoding = (req.headers["content-encoding"] ?? "").trim().toLowerCase();
  const raw = rawBody(req, options);
  if (encoding === "" || encoding === "identity") return raw;
  const compression = CONTENT_ENCODINGS[encoding];
  if (compression === undefined) {
    throw new HttpError(415, "http.content-encoding", `unsupported Content-Encoding ${JSON.stringify(encoding)} (supported: ${Object.keys(CONTENT_ENCODINGS).join(", ")})`);
  }
  const decodedLimit = options.decodedLimit ?? options.limit;
  return limitDecoded(decompressStream(raw, compression, { maxOutputBytes: decodedLimit }), decodedLimit, options.what);
}

async function* limitDecoded(source: AsyncIterable<Uint8Array>, limit: number, what: string): AsyncGenerator<Uint8Array> {
  let total = 0;
  try {
    for await (const piece of source) {
      total += piece.length;
      if (total > limit) throw tooLarge(`${what} (decoded)`, limit);
      yield piece;
    }
  } catch (err) {
    if (err instanceof HttpError) throw err;
    // The decoder's own limit or a corrupt stream: the client's input is at fault.
    const message = (err as Error).message ?? String(err);
    if ((err as { code?: unknown }).code === "decompress.too-large") throw new HttpError(413, "http.too-large", `${what}: ${message}`, { cause: err });
    throw new HttpError(400, "http.content-encoding", `${what}: cannot decode the body: ${message}`, { cause: err });
  }
}

/** Collects a (small) body into one buffer. */
export async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const pieces: Uint8Array[] = [];
  for await (const piece of source) pieces.push(piece);
  return Buffer.concat(pieces);
}
