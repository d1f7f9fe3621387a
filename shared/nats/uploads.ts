// Upload status records (KV `uploads`, key = upload id): what a client that uploaded a path waits
// on. Writes only move forward (queued → chunking → indexing → done/failed), with a
// compare-and-set, so a redelivered work item that replays an earlier step cannot make a
// finished upload look unfinished again. `done` beats `failed`: a path that was indexed is
// readable, whatever a straggling failure says.
import type { KV } from "@nats-io/kv";
import { FormatError, NixcasError } from "../errors.ts";
import { isWrongLastSequence } from "./jetstream-codes.ts";
import type { Topology } from "./topology.ts";

export type UploadState = "queued" | "chunking" | "indexing" | "done" | "failed";

export interface UploadStatus {
  uploadId: string;
  state: UploadState;
  storePath: string;
  reason?: string;
  updatedAt: string;
}

const RANK: Record<UploadState, number> = { queued: 0, chunking: 1, indexing: 2, failed: 3, done: 4 };
const UPLOAD_ID = /^[A-Za-z0-9_-]{1,64}$/;

export function isTerminal(state: UploadState): boolean {
  return state === "done" || state === "failed";
}

/**
 * Records `status` unless the stored one is already further along. Returns whether it was
 * written.
 */
export async function setUploadStatus(topology: Topology, status: UploadStatus): Promise<boolean> {
  checkStatus(status, "upload status to write");
  const kv = topology.kv.uploads;
  const value = new TextEncoder().encode(JSON.stringify(normalize(status)));
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      const entry = await kv.get(status.uploadId);
      if (entry === null || entry.operation !== "PUT") {
        await kv.create(status.uploadId, value);
        return true;
      }
      const current = parseStatus(entry.value, status.uploadId);
      if (current !== null && RANK[current.state] > RANK[status.state]) return false;
      await kv.update(status.uploadId, value, entry.revision);
      return true;
    } catch (err) {
      if (isWrongLastSequence(err)) continue; // someone else wrote in between: read again
      throw new NixcasError("upload.status-write", `cannot record upload ${status.uploadId} as ${status.state}: ${(err as Error).message}`, { cause: err });
    }
  }
  throw new NixcasError("upload.status-write", `upload ${status.uploadId}: status kept changing under us, gave up writing ${status.state}`);
}

export async function getUploadStatus(topology: Topology, uploadId: string): Promise<UploadStatus | null> {
  checkUploadId(uploadId);
  const entry = await topology.kv.uploads.get(uploadId);
  if (entry === null || entry.operation !== "PUT") return null;
  return parseStatus(entry.value, uploadId);
}

/**
 * Resolves once the upload is `done` or `failed`, or after `timeoutMs` with the last state
 * seen. It watches the key (the watch starts with the current value), so a change between a
 * read and a subscribe cannot be missed. NixcasError `upload.unknown` when no status exists at
 * all by the timeout.
 */
export async function waitForUpload(topology: Topology, uploadId: string, timeoutMs: number): Promise<UploadStatus> {
  checkUploadId(uploadId);
  const last = await watchUntilTerminal(topology.kv.uploads, uploadId, timeoutMs);
  if (last === null) throw new NixcasError("upload.unknown", `no status recorded for upload ${uploadId} within ${timeoutMs} ms`);
  return last;
}

async function watchUntilTerminal(kv: KV, uploadId: string, timeoutMs: number): Promise<UploadStatus | null> {
  const watch = await kv.watch({ key: uploadId });
  let last: UploadStatus | null = null;
  const timer = setTimeout(() => watch.stop(), timeoutMs);
  try {
    for await (const entry of watch) {
      if (entry.operation !== "PUT") continue;
      const status = parseStatus(entry.value, uploadId);
      if (status === null) continue;
      last = status;
      if (isTerminal(status.state)) break;
    }
  } finally {
    clearTimeout(timer);
    watch.stop();
  }
  return last;
}

function parseStatus(bytes: Uint8Array, uploadId: string): UploadStatus | null {
  try {
    const v = JSON.parse(new TextDecoder().decode(bytes)) as UploadStatus;
    checkStatus(v, `KV uploads/${uploadId}`);
    return v;
  } catch {
    return null; // a damaged record is treated as absent; the next write replaces it
  }
}

function normalize(s: UploadStatus): UploadStatus {
  return { uploadId: s.uploadId, state: s.state, storePath: s.storePath, ...(s.reason !== undefined ? { reason: s.reason } : {}), updatedAt: s.updatedAt };
}

function checkUploadId(id: string): void {
  if (typeof id !== "string" || !UPLOAD_ID.test(id)) throw new FormatError("upload.id", `${JSON.stringify(id)} is not an upload id`);
}

function checkStatus(s: UploadStatus, where: string): void {
  if (typeof s !== "object" || s === null) throw new FormatError("upload.status", `${where}: not an object`);
  checkUploadId(s.uploadId);
  if (!Object.hasOwn(RANK, s.state)) throw new FormatError("upload.status", `${where}: unknown state ${JSON.stringify(s.state)}`);
  if (typeof s.storePath !== "string") throw new FormatError("upload.status", `${where}: storePath is not a string`);
  if (s.reason !== undefined && typeof s.reason !== "string") throw new FormatError("upload.status", `${where}: reason is not a string`);
  if (typeof s.updatedAt !== "string") throw new FormatError("upload.status", `${where}: updatedAt is not a string`);
}
