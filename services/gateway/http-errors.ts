// HTTP statuses as errors, and the status policy that follows from what Nix clients do
// (docs/nix-protocol.md §7.3, §8.1):
// - GET/HEAD: 404 for anything absent (also junk names: a bad name is simply not there);
//   5xx is honest for our own failures (Nix retries a few times, then reports it).
// - PUT: only 200/201/204 or 4xx. A 5xx (or 202, 408, 429) makes Nix < 2.34 retry with an empty
//   body and hang for 300 s per attempt, so every PUT failure, ours included, is a 4xx. The one
//   429 is the upload rate limit's, which upload-rate.ts sends only to clients that retry a PUT
//   with its body.
import type { ServerResponse } from "node:http";
import { FormatError, IntegrityError, NixcasError } from "../../shared/errors.ts";
import { isStorageFull, storageFullReason } from "../../shared/nats/jetstream-codes.ts";

/** An error that already knows its HTTP status. */
export class HttpError extends NixcasError {
  readonly status: number;
  readonly headers: Record<string, string>;
  constructor(status: number, code: string, message: string, options?: ErrorOptions & { headers?: Record<string, string> }) {
    super(code, message, options);
    this.status = status;
    this.headers = options?.headers ?? {};
  }
}

export const notFound = (what: string): HttpError => new HttpError(404, "http.not-found", `${what} not found`);
export const badRequest = (code: string, message: string, cause?: unknown): HttpError =>
  new HttpError(400, code, message, cause === undefined ? undefined : { cause });
export const tooLarge = (what: string, limit: number): HttpError =>
  new HttpError(413, "http.too-large", `${what} is larger than the limit of ${limit} bytes`);

/** The status an error maps to on a read (GET/HEAD). */
export function statusForRead(err: unknown): number {
  if (err instanceof HttpError) return err.status;
  if (err instanceof FormatError) return 400;
  // Stored bytes that do not hash to their address: the cache is damaged, not the request.
  if (err instanceof IntegrityError) return 500;
  return 500;
}

/**
 * The status an error maps to on an upload: the error's own 4xx, 400 for everything else. Never
 * 5xx (see the header comment), also not for our own bugs or an unreachable NATS.
 */
export function statusForUpload(err: unknown): number {
  // JetStream out of space or at a limit: 413, "larger than the server is able to process"
  // (RFC 9110 §15.5.14) — here, able to store right now. A 4xx as every PUT failure (see the
  // header comment; 507 would be the 5xx), and not 400: the request itself is fine, and a client
  // or monitor can tell "cache full" from "bad upload" by the status alone.
  if (isStorageFull(err)) return 413;
  if (err instanceof HttpError && err.status >= 400 && err.status < 500 && err.status !== 408 && (err.status !== 429 || err.code === "auth.rate-limited")) {
    return err.status;
  }
  return 400;
}

/** True for errors that are the client's fault (its input), as opposed to ours. */
export function isClientError(err: unknown): boolean {
  if (err instanceof HttpError) return err.status < 500;
  return err instanceof FormatError || err instanceof IntegrityError;
}

export function errorMessage(err: unknown): string {
  // The server's bare "maximum bytes exceeded" says neither where nor what to do.
  if (isStorageFull(err) && !(err instanceof NixcasError && err.code === "storage.full")) return storageFullReason(err);
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * A short plain-text answer with an exact Content-Length. Never a Content-Encoding: Nix 2.8
 * sends no Accept-Encoding and fails on any coding it gets, even `identity` (docs/nix-protocol.md §6.3).
 */
export function sendText(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    // Too late for a status: cut the connection so the client sees a failed transfer.
    res.destroy();
    return;
  }
  const body = Buffer.from(text.endsWith("\n") || text === "" ? text : text + "\n", "utf8");
  res.writeHead(status, {
    "Content-Type": "text/plain; charset=utf-8",
    "Content-Length": String(body.length),
    ...headers,
  });
  res.end(body);
}
