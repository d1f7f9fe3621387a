// The `staging` object store: whole NARs as uploaded (usually compressed), waiting to be
// chunked. Every user goes through here — the gateway (PUT nar/…) and IngestClient (NARs above
// the inline limit) put objects, the ingester checks they exist, the chunker reads and deletes
// them — so object names, the digest format and the read path exist once. Objects expire after
// a day (STAGING_TTL_MS in topology.ts), used or not.
//
// Why reads do not use ObjectStore.get(): it reads through a push consumer and enqueues every
// chunk into a ReadableStream without waiting for the reader, so an object of tens of GiB read
// by a slower consumer (the chunker) piles up in memory. `read` fetches a bounded batch of
// chunks at a time with an ordered pull consumer, and asks for the next batch only when the
// reader has taken the last one; the object's sha256 is checked at the end, as get() would.
import { createHash } from "node:crypto";
import { nuid } from "@nats-io/nats-core";
import type { ObjectInfo, ObjectStore } from "@nats-io/obj";
import { IntegrityError, NixcasError } from "../errors.ts";
import { STAGING_BUCKET, type Topology } from "./topology.ts";

/** An object in `staging`, as its metadata describes it. */
export interface StagedObject {
  name: string;
  /** Bytes of the object (the NAR as uploaded). */
  size: number;
  /** sha256 of the bytes, from the object's `SHA-256=` digest; null when the digest is unreadable. */
  sha256: Uint8Array | null;
  /** The object store's record: where the chunks are, and the digest as written. */
  info: ObjectInfo;
}

export interface StagedReadOptions {
  /** Object chunks (128 KiB by default) asked for per fetch. */
  batch?: number;
  /** A fetch that brings nothing for this long while bytes are missing is an error. */
  stallMs?: number;
}

/** A fresh object name: one per upload, so concurrent uploads of the same file never mix. */
export function newStagingObjectName(): string {
  return `upload.${nuid.next()}`;
}

const DIGEST_PREFIX = "SHA-256=";

/**
 * The sha256 in an object store digest, or null if it is not one. nats.js and nats.go write
 * `SHA-256=<base64url, padded>`; other clients have written hex and standard base64, which the
 * object store's own reader (@nats-io/obj, sha_digest.parser.ts) accepts too — so do we.
 */
export function parseStagingDigest(digest: string): Uint8Array | null {
  if (!digest.startsWith(DIGEST_PREFIX)) return null;
  const body = digest.slice(DIGEST_PREFIX.length);
  let bytes: Buffer;
  if (/^(?:[0-9a-f]{64}|[0-9A-F]{64})$/.test(body)) bytes = Buffer.from(body, "hex");
  else if (/^[A-Za-z0-9_-]+={0,2}$/.test(body) || /^[A-Za-z0-9+/]+={0,2}$/.test(body)) bytes = Buffer.from(body, "base64");
  else return null;
  return bytes.length === 32 ? new Uint8Array(bytes) : null;
}

export class StagingStore {
  readonly #topology: Topology;
  readonly #objects: ObjectStore;

  constructor(topology: Topology) {
    this.#topology = topology;
    this.#objects = topology.staging;
  }

  /**
   * Streams `source` into object `name` (pulled at the object store's pace, never buffered
   * whole). An error of the source fails the put, and the object store then purges what it
   * wrote; the error is passed through as it is (the caller knows what it means).
   */
  async put(name: string, source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>, options: { description?: string } = {}): Promise<StagedObject> {
    const info = await this.#objects.put({ name, ...(options.description !== undefined ? { description: options.description } : {}) }, toReadableStream(source));
    return describe(info);
  }

  /** The object, or null when it does not exist (never uploaded, deleted, expired). */
  async info(name: string): Promise<StagedObject | null> {
    const info = await this.#objects.info(name);
    return info === null || info.deleted ? null : describe(info);
  }

  async delete(name: string): Promise<void> {
    await this.#objects.delete(name);
  }

  /**
   * The object's bytes in order, with back-pressure. Throws IntegrityError `staged.digest` when
   * the bytes do not hash to the recorded digest (checked at the end) or the digest is
   * unreadable, `staged.size` when there are more bytes than recorded, NixcasError
   * `staged.stalled` when the chunks stop coming (the object was deleted while being read).
   */
  async *read(object: StagedObject, options: StagedReadOptions = {}): AsyncGenerator<Uint8Array> {
    const { info } = object;
    const expected = object.sha256;
    if (expected === null) throw new IntegrityError("staged.digest", `staged object ${info.name} has an unreadable digest: ${info.digest}`);
    const batch = options.batch ?? 32;
    const stallMs = options.stallMs ?? 30_000;
    const sha = createHash("sha256");
    let received = 0;
    if (info.size > 0) {
      const consumer = await this.#topology.js.consumers.get(`OBJ_${STAGING_BUCKET}`, { filter_subjects: `$O.${STAGING_BUCKET}.C.${info.nuid}` });
      try {
        let messagesLeft = info.chunks;
        while (received < info.size) {
          // Never ask for more than is left: a pull for more waits out `expires` at the end.
          const messages = await consumer.fetch({ max_messages: Math.max(1, Math.min(batch, messagesLeft)), expires: stallMs });
          let got = 0;
          for await (const m of messages) {
            got++;
            messagesLeft--;
            if (m.data.length === 0) continue;
            received += m.data.length;
            if (received > info.size) {
              throw new IntegrityError("staged.size", `staged object ${info.name} has more than its recorded ${info.size} bytes`);
            }
            sha.update(m.data);
            yield m.data;
          }
          if (got === 0) {
            throw new NixcasError("staged.stalled", `staged object ${info.name}: no data for ${stallMs} ms after ${received} of ${info.size} bytes (deleted while being read?)`);
          }
        }
      } finally {
        await consumer.delete().catch(() => {});
      }
    }
    const digest = sha.digest();
    if (!digest.equals(expected)) {
      throw new IntegrityError(
        "staged.digest",
        `staged object ${info.name} is corrupt: its ${received} bytes hash to sha256 ${digest.toString("hex")}, the object store recorded ${Buffer.from(expected).toString("hex")}`,
      );
    }
  }
}

function describe(info: ObjectInfo): StagedObject {
  return { name: info.name, size: info.size, sha256: parseStagingDigest(info.digest), info };
}

/** Pull-based, so the object store reads the source at its own pace; a source error errors the stream. */
function toReadableStream(source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const iterator = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : (source as Iterable<Uint8Array>)[Symbol.iterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const r = await iterator.next();
      if (r.done) controller.close();
      else controller.enqueue(r.value);
    },
    async cancel() {
      await iterator.return?.();
    },
  });
}
