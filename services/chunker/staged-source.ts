// Reads a staged NAR from the `staging` object store as a stream with back-pressure.
//
// Why not ObjectStore.get(): it reads through a push consumer and enqueues every chunk into a
// ReadableStream without waiting for the reader, so an object of tens of GiB read by a slower
// consumer (our chunker) piles up in memory. Here an ordered pull consumer fetches a bounded
// batch at a time, and the next batch is asked for only when the chunker has taken the last one.
// The object's sha256 (its `SHA-256=` digest) is checked at the end, as get() would.
import { createHash } from "node:crypto";
import type { ObjectInfo } from "@nats-io/obj";
import { IntegrityError, NixcasError } from "../../shared/errors.ts";
import { STAGING_BUCKET, type Topology } from "../../shared/nats/topology.ts";

export interface StagedSourceOptions {
  /** Object chunks (128 KiB by default) asked for per fetch. */
  batch?: number;
  /** A fetch that brings nothing for this long while bytes are missing is an error. */
  stallMs?: number;
}

/** The object's info, or null when it does not exist (never uploaded, deleted, expired). */
export async function stagedObjectInfo(topology: Topology, name: string): Promise<ObjectInfo | null> {
  const info = await topology.staging.info(name);
  return info === null || info.deleted ? null : info;
}

export async function* readStagedObject(topology: Topology, info: ObjectInfo, options: StagedSourceOptions = {}): AsyncGenerator<Uint8Array> {
  const expected = parseDigest(info.digest, info.name);
  const batch = options.batch ?? 32;
  const stallMs = options.stallMs ?? 30_000;
  const sha = createHash("sha256");
  let received = 0;
  if (info.size > 0) {
    const consumer = await topology.js.consumers.get(`OBJ_${STAGING_BUCKET}`, { filter_subjects: `$O.${STAGING_BUCKET}.C.${info.nuid}` });
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
      `staged object ${info.name} is corrupt: its ${received} bytes hash to sha256 ${digest.toString("hex")}, the object store recorded ${expected.toString("hex")}`,
    );
  }
}

function parseDigest(digest: string, name: string): Buffer {
  const prefix = "SHA-256=";
  if (!digest.startsWith(prefix)) throw new IntegrityError("staged.digest", `staged object ${name} has an unknown digest type: ${digest}`);
  const body = digest.slice(prefix.length);
  const bytes = /^[0-9a-f]{64}$/i.test(body) ? Buffer.from(body, "hex") : Buffer.from(body.replace(/-/g, "+").replace(/_/g, "/"), "base64");
  if (bytes.length !== 32) throw new IntegrityError("staged.digest", `staged object ${name} has an unreadable digest: ${digest}`);
  return bytes;
}
