// The upload rate limit (NIXCAS_UPLOAD_RATE / NIXCAS_UPLOAD_BURST): a token bucket per uploader —
// a token's id, or the client address of an anonymous one — so one runaway CI job cannot flood
// the pipeline for everyone. Over it the upload is refused with Retry-After.
//
// The status depends on the client, because of docs/nix-protocol.md §7.3: Nix before 2.34 (and
// Lix, forked before the fix) retries a 429 on a PUT with the same Content-Length and an empty
// body, and then hangs 300 s per attempt. Those get a 400 with the same message (the copy fails
// at once, saying why); Nix 2.34+ (which re-sends the body and honours Retry-After) and every
// other client get 429.
import type { IncomingMessage } from "node:http";
import { HttpError } from "./http-errors.ts";

export interface UploadRate {
  /** Requests per second, on average. */
  perSecond: number;
  /** Requests at once before the average applies. */
  burst: number;
}

/** Buckets kept at most; full (idle) ones are dropped first when it is reached. */
const MAX_BUCKETS = 100_000;

export class UploadRateLimiter {
  readonly #rate: UploadRate;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(rate: UploadRate) {
    this.#rate = rate;
  }

  /** Takes one request from `key`'s bucket: 0 when allowed, else the seconds until it would be. */
  take(key: string, now = performance.now()): number {
    const { perSecond, burst } = this.#rate;
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= MAX_BUCKETS) this.#dropFull(now);
      bucket = { tokens: burst, at: now };
      this.#buckets.set(key, bucket);
    } else {
      bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * perSecond);
      bucket.at = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / perSecond));
  }

  #dropFull(now: number): void {
    const { perSecond, burst } = this.#rate;
    for (const [key, b] of this.#buckets) if (b.tokens + ((now - b.at) / 1000) * perSecond >= burst) this.#buckets.delete(key);
    // Everyone busy at once: forget the oldest (they start again with a full burst).
    for (const key of this.#buckets.keys()) {
      if (this.#buckets.size < MAX_BUCKETS) break;
      this.#buckets.delete(key);
    }
  }
}

/** The refusal of an upload over the rate: 429, or 400 for clients that mishandle 429 on PUT. */
export function rateLimited(req: IncomingMessage, who: string, rate: UploadRate, retryAfterSeconds: number): HttpError {
  const status = retriesPutSafely(req.headers["user-agent"]) ? 429 : 400;
  return new HttpError(
    status,
    "auth.rate-limited",
    `too many uploads from ${who}: the limit is ${rate.perSecond}/s with bursts of ${rate.burst} (NIXCAS_UPLOAD_RATE, NIXCAS_UPLOAD_BURST); retry in ${retryAfterSeconds} s`,
    { headers: { "Retry-After": String(retryAfterSeconds) } },
  );
}

/** False for Nix before 2.34 and for Lix, which re-send a retried PUT without its body. */
export function retriesPutSafely(userAgent: string | undefined): boolean {
  if (userAgent === undefined) return true;
  if (/\bLix\//.test(userAgent)) return false;
  const nix = /\bNix\/(\d+)\.(\d+)/.exec(userAgent);
  if (nix === null) return true;
  const [major, minor] = [Number(nix[1]), Number(nix[2])];
  return major > 2 || (major === 2 && minor >= 34);
}
