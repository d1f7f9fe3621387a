// Outcomes of an upload, as the pipeline announces them: the `uploads` status and an event on
// EVENTS (`nixcas.events.path.added|failed.<hashPart>`, body `{ uploadId, storePath, reason? }`).
// Events go through JetStream publish with an ack: a plain publish while disconnected would be
// dropped without an error, and a waiter that subscribes late reads them from the stream.
import type { Logger } from "../log.ts";
import { parseStorePathBaseName } from "../store-path.ts";
import { SUBJECTS } from "./subjects.ts";
import type { Topology } from "./topology.ts";
import { setUploadStatus } from "./uploads.ts";

export interface PathEvent {
  uploadId: string;
  storePath: string;
  reason?: string;
}

/** The hash part of a full store path (already validated by the ingester), or null. */
function hashPartOf(storePath: string): string | null {
  try {
    return parseStorePathBaseName(storePath.slice(storePath.lastIndexOf("/") + 1)).hashPart;
  } catch {
    return null;
  }
}

export async function publishPathAdded(topology: Topology, event: PathEvent): Promise<void> {
  const hashPart = hashPartOf(event.storePath);
  if (hashPart === null) return;
  await topology.js.publish(SUBJECTS.pathAdded(hashPart), JSON.stringify(event));
}

/**
 * The dead-letter hook of both work queues: status `failed` with the reason (forward-only, so
 * it never overrides `done`) and the failed event. `item` is undefined when the item did not
 * even decode; the upload id and path are then taken from the raw JSON when it has them.
 */
export async function markUploadFailed(
  topology: Topology,
  item: { uploadId: string; meta: { storePath: string } } | undefined,
  reason: string,
  raw: Uint8Array,
  logger: Logger,
): Promise<void> {
  const ids = item ? { uploadId: item.uploadId, storePath: item.meta.storePath } : idsFromRaw(raw);
  logger.warn("upload failed", { ...ids, reason });
  if (!ids) return;
  await setUploadStatus(topology, { uploadId: ids.uploadId, state: "failed", storePath: ids.storePath, reason, updatedAt: new Date().toISOString() });
  const hashPart = hashPartOf(ids.storePath);
  if (hashPart !== null) {
    await topology.js.publish(SUBJECTS.pathFailed(hashPart), JSON.stringify({ uploadId: ids.uploadId, storePath: ids.storePath, reason } satisfies PathEvent));
  }
}

function idsFromRaw(raw: Uint8Array): { uploadId: string; storePath: string } | undefined {
  try {
    const v = JSON.parse(new TextDecoder().decode(raw)) as { uploadId?: unknown; meta?: { storePath?: unknown } };
    if (typeof v.uploadId === "string" && /^[A-Za-z0-9_-]{1,64}$/.test(v.uploadId) && typeof v.meta?.storePath === "string") {
      return { uploadId: v.uploadId, storePath: v.meta.storePath };
    }
  } catch {
    // not JSON: nothing to report against
  }
  return undefined;
}
