// The cold tier: where the tierer puts packs of cold chunks (docs/tiering.md, "Cold tier backends
// and packs"). One interface, two backends — an S3 bucket (s3-cold-store.ts) and, on one machine
// without S3, a directory (dir-cold-store.ts) — so the tierer, the readers and GC never ask which.
//
// Reads are ranged: a cold chunk is one frame somewhere in a pack of tens of MiB, and only its
// bytes are fetched. An object in an archive class (GLACIER, DEEP_ARCHIVE) cannot be read until
// a restore has made a temporary copy readable: `getRange` then fails with `cold.archived`, and
// `restore` asks for the copy.
import { join } from "node:path";
import type { NixcasConfig } from "../config.ts";
import { DirColdStore } from "./dir-cold-store.ts";
import { S3ColdStore } from "./s3-cold-store.ts";

export { ARCHIVE_STORAGE_CLASSES, COLD_ERRORS } from "./cold-errors.ts";

/** What the store knows of one object. */
export interface ColdObjectState {
  bytes: number;
  /** S3 storage class (STANDARD when the server names none); "DIR" for the directory backend. */
  storageClass: string;
  /** In an archive class: not readable without a restore. */
  archived: boolean;
  /** Of an archived object: "done" while a restored copy is readable. Always "none" when not archived. */
  restore: "none" | "in-progress" | "done";
}

export interface ColdStore {
  /** Where the objects are, for logs and `nixcas stats`: "s3://bucket/prefix", "dir:/path". */
  readonly description: string;
  /** Writes the whole object (replacing one of the same key); `storageClass` is ignored by the directory. */
  put(key: string, body: Uint8Array, storageClass?: string): Promise<void>;
  /**
   * Exactly `length` bytes from `offset`. NixcasError `cold.archived` (archive class, not
   * restored), `cold.missing` (no object), `cold.range` (the object is shorter than asked).
   */
  getRange(key: string, offset: number, length: number): Promise<Uint8Array>;
  /** null when there is no object. */
  head(key: string): Promise<ColdObjectState | null>;
  /** Asks for a readable copy of an archived object for `days`; a no-op when it is not archived. `cold.missing` when there is no object. */
  restore(key: string, days: number): Promise<void>;
  /** Deletes the object; deleting a missing one is not an error. */
  delete(key: string): Promise<void>;
  /** Objects whose key starts with `prefix` (keys as given to `put`, without the store's own prefix). */
  list(prefix: string): AsyncIterable<{ key: string; bytes: number }>;
}

/**
 * The configured cold tier: the S3 bucket when NIXCAS_S3_BUCKET is set, else NIXCAS_COLD_DIR,
 * else `defaultDir` (`nixcas up` passes `<NIXCAS_DATA_DIR>/cold`, see `defaultColdDir`), else
 * null (no cold tier: a tierer refuses to start, readers serve hot blocks only).
 */
export function coldStoreOf(config: NixcasConfig, defaultDir: string | null = null): ColdStore | null {
  const { s3, coldDir } = config.tiering;
  if (s3 !== null) return new S3ColdStore(s3);
  const dir = coldDir ?? defaultDir;
  return dir === null ? null : new DirColdStore(dir);
}

/** `<NIXCAS_DATA_DIR>/cold`: the cold tier of `nixcas up` when neither S3 nor NIXCAS_COLD_DIR is set. */
export function defaultColdDir(config: NixcasConfig): string {
  return join(config.dataDir, "cold");
}
