// Typed access to the KV buckets (docs/architecture.md, "NATS topology"): each key is checked
// before it is used, each value is checked when it is read back, so a bad key is a precise
// error and a damaged record is never believed.
import { CID } from "multiformats/cid";
import type { KV } from "@nats-io/kv";
import { checkLink, type EncodedBlock } from "../block.ts";
import { cidForBytes, DAG_CBOR_CODEC } from "../cid.ts";
import { FormatError, IntegrityError, NixcasError } from "../errors.ts";
import { decodePathInfo, type PathInfo } from "../path-info.ts";
import { formatHash, parseHash, sha256Hash } from "../hash.ts";
import { NARINFO_COMPRESSIONS } from "../narinfo.ts";
import { isValidHashPart, parseStorePath } from "../store-path.ts";
import { mapBounded } from "./flow-control.ts";
import { isWrongLastSequence } from "./jetstream-codes.ts";
import { escapeKey } from "./subjects.ts";
import type { KvBucketName, Topology } from "./topology.ts";

/** A whole NAR in the `staging` object store, waiting for its narinfo (key `nar.<FileHash>`). */
export interface StagedNar {
  /** Object name in `staging`. */
  object: string;
  /** Bytes of the object (the compressed NAR as uploaded). */
  size: number;
  /** sha256 of the object, as nix32 (empty when not computed). */
  sha256: string;
  /** ISO time of the upload. */
  createdAt: string;
}

/**
 * A NAR as the cache holds it (KV `nars`, key its NAR hash). The `.nar.zst` file the gateway
 * serves is the manifest's chunk frames concatenated; blocks are never overwritten, so those
 * bytes, and their sha256 and length, are fixed once every chunk is stored: the indexer computes
 * them once and the narinfo carries them as FileHash/FileSize.
 */
export interface NarRecord {
  manifest: CID;
  /** sha256 of the `.nar.zst` file; null in records written before it was recorded (a bare CID). */
  zstFileHash: Uint8Array | null;
  /** Bytes of the `.nar.zst` file; null exactly when zstFileHash is. */
  zstFileSize: number | null;
}

/** A record as the indexer writes it: always complete. */
export interface CompleteNarRecord {
  manifest: CID;
  zstFileHash: Uint8Array;
  zstFileSize: number;
}

/**
 * A NAR file name a client uploaded (`PUT nar/<name>`, e.g. `<FileHash>.nar.xz`) and committed
 * with a narinfo (KV `files`, key the escaped name). The uploader's Nix keeps its own narinfo,
 * which points at this name, for 30 days: the gateway serves the NAR under it, in `compression`.
 */
export interface UploadedFile {
  /** `sha256:<52 nix32>` of the NAR (not of the file). */
  narHash: string;
  /** The `Compression:` of the narinfo that committed it. */
  compression: string;
}

const NIX32_NAR_HASH = /^[0-9a-df-np-sv-z]{52}$/;
const SHA256_NIX32 = /^sha256:[0-9a-df-np-sv-z]{52}$/;
const KV_KEY = /^[-/_=.a-zA-Z0-9]+$/;
const KEY_LOOKUPS_IN_FLIGHT = 32;

export class Catalog {
  readonly #kv: Record<KvBucketName, KV>;

  constructor(topology: Topology) {
    this.#kv = topology.kv;
  }

  // --- paths: hash part -> PathInfo node (dag-cbor bytes) ---

  async getPathInfo(hashPart: string): Promise<{ info: PathInfo; cid: CID } | null> {
    const bytes = await this.#get("paths", checkHashPart(hashPart));
    if (bytes === null) return null;
    const cid = cidForBytes(bytes, DAG_CBOR_CODEC);
    let info: PathInfo;
    try {
      info = decodePathInfo(bytes, cid);
    } catch (err) {
      throw new IntegrityError("catalog.corrupt", `KV paths/${hashPart} holds an invalid PathInfo: ${(err as Error).message}`, { cause: err });
    }
    if (parseStorePath(info.storePath, storeDirOf(info.storePath)).hashPart !== hashPart) {
      throw new IntegrityError("catalog.corrupt", `KV paths/${hashPart} holds the PathInfo of ${info.storePath}`);
    }
    return { info, cid };
  }

  /** Writes the PathInfo node; the key must be the hash part of the node's own store path. */
  async putPathInfo(hashPart: string, encoded: EncodedBlock): Promise<void> {
    checkHashPart(hashPart);
    const info = decodePathInfo(encoded.bytes, encoded.cid);
    const own = parseStorePath(info.storePath, storeDirOf(info.storePath)).hashPart;
    if (own !== hashPart) throw new FormatError("catalog.key-mismatch", `PathInfo of ${info.storePath} cannot be stored under paths/${hashPart}`);
    await this.#put("paths", hashPart, encoded.bytes);
  }

  /** For each hash part, whether a PathInfo is recorded (same order). */
  async hasPaths(hashParts: string[]): Promise<boolean[]> {
    for (const h of hashParts) checkHashPart(h);
    return mapBounded(hashParts, KEY_LOOKUPS_IN_FLIGHT, async (h) => (await this.#get("paths", h)) !== null);
  }

  async deletePathInfo(hashPart: string): Promise<void> {
    await this.#delete("paths", checkHashPart(hashPart));
  }

  // --- nars: NAR hash (52 nix32) -> NarRecord JSON (or, written before, the bare manifest CID) ---

  async getNar(narHashNix32: string): Promise<NarRecord | null> {
    const key = checkNarHash(narHashNix32);
    const bytes = await this.#get("nars", key);
    return bytes === null ? null : decodeNarRecord(bytes, key);
  }

  async manifestForNar(narHashNix32: string): Promise<CID | null> {
    return (await this.getNar(narHashNix32))?.manifest ?? null;
  }

  /**
   * Records a NAR unless it has a complete record already: creates the record, or completes a
   * bare-CID record of the same manifest (compare-and-set). A complete record is never replaced
   * — its FileHash may have been served — so concurrent indexers agree on the first one. Returns
   * the record that is stored.
   */
  async putNar(narHashNix32: string, record: CompleteNarRecord): Promise<NarRecord> {
    const key = checkNarHash(narHashNix32);
    const problem = narRecordProblem(record);
    if (problem) throw new FormatError("catalog.nar-record", `NAR record for ${key}: ${problem}`);
    checkLink(record.manifest, DAG_CBOR_CODEC, `manifest root for nars/${key}`);
    const bytes = encodeNarRecord(record);
    const kv = this.#kv.nars;
    for (let attempt = 0; attempt < 10; attempt++) {
      let entry;
      try {
        entry = await kv.get(key);
      } catch (err) {
        throw new NixcasError("catalog.kv", `cannot read KV nars/${key}: ${(err as Error).message}`, { cause: err });
      }
      try {
        if (entry === null || entry.operation !== "PUT") {
          await kv.create(key, bytes);
          return { ...record };
        }
        const current = decodeNarRecord(entry.value, key);
        if (current.zstFileHash !== null) return current;
        if (!current.manifest.equals(record.manifest)) {
          throw new NixcasError(
            "catalog.nar-manifest",
            `KV nars/${key} holds manifest ${current.manifest} without a .nar.zst hash; it can only be completed with the hash of that manifest's frames, not of ${record.manifest}`,
          );
        }
        await kv.update(key, bytes, entry.revision);
        return { ...record };
      } catch (err) {
        if (isWrongLastSequence(err)) continue; // another writer in between: read again
        if (err instanceof NixcasError) throw err;
        throw new NixcasError("catalog.kv", `cannot write KV nars/${key}: ${(err as Error).message}`, { cause: err });
      }
    }
    throw new NixcasError("catalog.kv", `KV nars/${key} kept changing under us; gave up writing it`);
  }

  /**
   * Replaces the `.nar.zst` hash and size of a recorded NAR after repaired blocks changed its
   * frames (`nixcas verify --repair`): compare-and-set on the revision read, and only for the
   * manifest the record already names. Returns false when the record changed in between or
   * names another manifest (the caller checks again).
   */
  async replaceNarFile(narHashNix32: string, record: CompleteNarRecord): Promise<boolean> {
    const key = checkNarHash(narHashNix32);
    const problem = narRecordProblem(record);
    if (problem) throw new FormatError("catalog.nar-record", `NAR record for ${key}: ${problem}`);
    const kv = this.#kv.nars;
    try {
      const entry = await kv.get(key);
      if (entry === null || entry.operation !== "PUT" || !decodeNarRecord(entry.value, key).manifest.equals(record.manifest)) return false;
      await kv.update(key, encodeNarRecord(record), entry.revision);
      return true;
    } catch (err) {
      if (isWrongLastSequence(err)) return false;
      if (err instanceof NixcasError) throw err;
      throw new NixcasError("catalog.kv", `cannot write KV nars/${key}: ${(err as Error).message}`, { cause: err });
    }
  }

  // --- listings: hash part -> blob manifest CID of its `.ls` ---

  async getListing(hashPart: string): Promise<CID | null> {
    return this.#getCid("listings", checkHashPart(hashPart));
  }

  async putListing(hashPart: string, root: CID): Promise<void> {
    await this.#putCid("listings", checkHashPart(hashPart), root);
  }

  async deleteListing(hashPart: string): Promise<void> {
    await this.#delete("listings", checkHashPart(hashPart));
  }

  /**
   * Stores a listing only where none exists (a client's `.ls` upload: the pipeline's own one,
   * written with putListing, always wins). False when one exists; it is kept.
   */
  async createListing(hashPart: string, root: CID): Promise<boolean> {
    const key = checkHashPart(hashPart);
    checkLink(root, DAG_CBOR_CODEC, `manifest root for listings/${key}`);
    try {
      await this.#kv.listings.create(key, new TextEncoder().encode(root.toString()));
      return true;
    } catch (err) {
      if (isWrongLastSequence(err)) return false;
      throw new NixcasError("catalog.kv", `cannot write KV listings/${key}: ${(err as Error).message}`, { cause: err });
    }
  }

  // --- logs: escaped drv base name -> blob manifest CID ---

  async getLog(drvBaseName: string): Promise<CID | null> {
    return this.#getCid("logs", escapeKey(drvBaseName));
  }

  async putLog(drvBaseName: string, root: CID): Promise<void> {
    await this.#putCid("logs", escapeKey(drvBaseName), root);
  }

  /** Stores a log only where none exists (an upload without admin scope); false when one does. */
  async createLog(drvBaseName: string, root: CID): Promise<boolean> {
    const key = escapeKey(drvBaseName);
    checkLink(root, DAG_CBOR_CODEC, `manifest root for logs/${key}`);
    return this.#create("logs", key, new TextEncoder().encode(root.toString()));
  }

  // --- realisations: escaped id -> the `.doi` JSON verbatim ---

  async getRealisation(id: string): Promise<Uint8Array | null> {
    return this.#get("realisations", escapeKey(id));
  }

  async putRealisation(id: string, json: Uint8Array): Promise<void> {
    checkRealisationJson(id, json);
    await this.#put("realisations", escapeKey(id), json);
  }

  /** Stores a realisation only where none exists (an upload without admin scope); false when one does. */
  async createRealisation(id: string, json: Uint8Array): Promise<boolean> {
    checkRealisationJson(id, json);
    return this.#create("realisations", escapeKey(id), json);
  }

  // --- staged: `nar.<FileHash>` -> StagedNar ---

  async getStaged(fileKey: string): Promise<StagedNar | null> {
    const bytes = await this.#get("staged", checkKey(fileKey));
    if (bytes === null) return null;
    let value: unknown;
    try {
      value = JSON.parse(new TextDecoder().decode(bytes));
    } catch (err) {
      throw new IntegrityError("catalog.corrupt", `KV staged/${fileKey} is not JSON`, { cause: err });
    }
    const problem = stagedNarProblem(value);
    if (problem) throw new IntegrityError("catalog.corrupt", `KV staged/${fileKey}: ${problem}`);
    return value as StagedNar;
  }

  async putStaged(fileKey: string, value: StagedNar): Promise<void> {
    const problem = stagedNarProblem(value);
    if (problem) throw new FormatError("catalog.staged", `staged record for ${fileKey}: ${problem}`);
    const record: StagedNar = { object: value.object, size: value.size, sha256: value.sha256, createdAt: value.createdAt };
    await this.#put("staged", checkKey(fileKey), new TextEncoder().encode(JSON.stringify(record)));
  }

  async deleteStaged(fileKey: string): Promise<void> {
    await this.#delete("staged", checkKey(fileKey));
  }

  // --- files: escaped uploaded NAR name -> UploadedFile JSON ---

  async getUploadedFile(name: string): Promise<UploadedFile | null> {
    const key = escapeKey(name);
    const bytes = await this.#get("files", key);
    if (bytes === null) return null;
    let value: unknown;
    try {
      value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    } catch (err) {
      throw new IntegrityError("catalog.corrupt", `KV files/${key} is not JSON`, { cause: err });
    }
    const problem = uploadedFileProblem(value);
    if (problem) throw new IntegrityError("catalog.corrupt", `KV files/${key}: ${problem}`);
    const v = value as UploadedFile;
    return { narHash: v.narHash, compression: v.compression };
  }

  /** Records (or re-records: the same name always names the same bytes) an uploaded NAR name. */
  async putUploadedFile(name: string, value: UploadedFile): Promise<void> {
    const problem = uploadedFileProblem(value);
    if (problem) throw new FormatError("catalog.file", `uploaded file record for ${JSON.stringify(name)}: ${problem}`);
    const record: UploadedFile = { narHash: value.narHash, compression: value.compression };
    await this.#put("files", escapeKey(name), new TextEncoder().encode(JSON.stringify(record)));
  }

  // --- plumbing ---

  async #get(bucket: KvBucketName, key: string): Promise<Uint8Array | null> {
    try {
      const entry = await this.#kv[bucket].get(key);
      return entry !== null && entry.operation === "PUT" ? entry.value : null;
    } catch (err) {
      throw new NixcasError("catalog.kv", `cannot read KV ${bucket}/${key}: ${(err as Error).message}`, { cause: err });
    }
  }

  async #put(bucket: KvBucketName, key: string, value: Uint8Array): Promise<void> {
    try {
      await this.#kv[bucket].put(key, value);
    } catch (err) {
      throw new NixcasError("catalog.kv", `cannot write KV ${bucket}/${key}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Create-only write: false when the key holds a value already. */
  async #create(bucket: KvBucketName, key: string, value: Uint8Array): Promise<boolean> {
    try {
      await this.#kv[bucket].create(key, value);
      return true;
    } catch (err) {
      if (isWrongLastSequence(err)) return false;
      throw new NixcasError("catalog.kv", `cannot write KV ${bucket}/${key}: ${(err as Error).message}`, { cause: err });
    }
  }

  async #delete(bucket: KvBucketName, key: string): Promise<void> {
    try {
      await this.#kv[bucket].delete(key);
    } catch (err) {
      throw new NixcasError("catalog.kv", `cannot delete KV ${bucket}/${key}: ${(err as Error).message}`, { cause: err });
    }
  }

  async #getCid(bucket: KvBucketName, key: string): Promise<CID | null> {
    const bytes = await this.#get(bucket, key);
    if (bytes === null) return null;
    const text = new TextDecoder().decode(bytes);
    try {
      const cid = CID.parse(text);
      checkLink(cid, DAG_CBOR_CODEC, `KV ${bucket}/${key}`);
      return cid;
    } catch (err) {
      throw new IntegrityError("catalog.corrupt", `KV ${bucket}/${key} holds ${JSON.stringify(text.slice(0, 100))}, not a manifest CID`, { cause: err });
    }
  }

  async #putCid(bucket: KvBucketName, key: string, cid: CID): Promise<void> {
    checkLink(cid, DAG_CBOR_CODEC, `manifest root for ${bucket}/${key}`);
    await this.#put(bucket, key, new TextEncoder().encode(cid.toString()));
  }
}

function checkHashPart(hashPart: string): string {
  if (!isValidHashPart(hashPart)) throw new FormatError("catalog.hash-part", `${JSON.stringify(hashPart)} is not a store path hash part (32 nix32 characters)`);
  return hashPart;
}

function checkNarHash(nix32: string): string {
  if (!NIX32_NAR_HASH.test(nix32)) throw new FormatError("catalog.nar-hash", `${JSON.stringify(nix32)} is not a sha256 NAR hash in nix32 (52 characters)`);
  return nix32;
}

function checkKey(key: string): string {
  if (!KV_KEY.test(key) || key.startsWith(".") || key.endsWith(".") || key.includes("..")) {
    throw new FormatError("catalog.key", `${JSON.stringify(key)} is not a valid KV key`);
  }
  return key;
}

/** The store dir part of a full store path (PathInfo nodes carry absolute paths). */
function storeDirOf(storePath: string): string {
  const slash = storePath.lastIndexOf("/");
  return slash > 0 ? storePath.slice(0, slash) : storePath;
}

/**
 * `{"manifest":"<CID>","zstFileHash":"sha256:<nix32>","zstFileSize":<n>}`; a value that is a
 * bare CID string is a record from before FileHash was recorded (both then null).
 */
function encodeNarRecord(r: CompleteNarRecord): Uint8Array {
  const json = { manifest: r.manifest.toString(), zstFileHash: formatHash(sha256Hash(r.zstFileHash), "nix32"), zstFileSize: r.zstFileSize };
  return new TextEncoder().encode(JSON.stringify(json));
}

function decodeNarRecord(bytes: Uint8Array, key: string): NarRecord {
  const corrupt = (why: string, cause?: unknown) => new IntegrityError("catalog.corrupt", `KV nars/${key}: ${why}`, cause === undefined ? undefined : { cause });
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (err) {
    throw corrupt("not UTF-8", err);
  }
  if (!text.startsWith("{")) {
    return { manifest: parseManifestCid(text, corrupt), zstFileHash: null, zstFileSize: null };
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw corrupt("not JSON", err);
  }
  const r = v as Record<string, unknown>;
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw corrupt("not an object");
  const keys = Object.keys(r).sort().join(",");
  if (keys !== "manifest,zstFileHash,zstFileSize") throw corrupt(`fields are ${JSON.stringify(keys)}, expected manifest, zstFileHash, zstFileSize`);
  if (typeof r.manifest !== "string") throw corrupt("manifest is not a string");
  const manifest = parseManifestCid(r.manifest, corrupt);
  if (typeof r.zstFileHash !== "string" || !SHA256_NIX32.test(r.zstFileHash)) throw corrupt(`zstFileHash ${JSON.stringify(r.zstFileHash)} is not sha256:<52 nix32>`);
  let zstFileHash: Uint8Array;
  try {
    zstFileHash = parseHash(r.zstFileHash, "sha256").digest;
  } catch (err) {
    throw corrupt(`zstFileHash ${JSON.stringify(r.zstFileHash)} does not decode`, err);
  }
  if (typeof r.zstFileSize !== "number" || !Number.isSafeInteger(r.zstFileSize) || r.zstFileSize <= 0) throw corrupt(`zstFileSize ${JSON.stringify(r.zstFileSize)} is not a byte count`);
  return { manifest, zstFileHash, zstFileSize: r.zstFileSize };
}

function parseManifestCid(text: string, corrupt: (why: string, cause?: unknown) => IntegrityError): CID {
  try {
    const cid = CID.parse(text);
    checkLink(cid, DAG_CBOR_CODEC, "manifest");
    return cid;
  } catch (err) {
    throw corrupt(`${JSON.stringify(text.slice(0, 100))} is not a manifest CID`, err);
  }
}

function narRecordProblem(r: CompleteNarRecord): string | null {
  if (!(r.zstFileHash instanceof Uint8Array) || r.zstFileHash.length !== 32) return "zstFileHash is not a 32-byte sha256 digest";
  if (!Number.isSafeInteger(r.zstFileSize) || r.zstFileSize <= 0) return `zstFileSize ${r.zstFileSize} is not a byte count`;
  return null;
}

function uploadedFileProblem(v: unknown): string | null {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "not an object";
  const r = v as Record<string, unknown>;
  const keys = Object.keys(r).sort().join(",");
  if (keys !== "compression,narHash") return `fields are ${JSON.stringify(keys)}, expected narHash, compression`;
  if (typeof r.narHash !== "string" || !SHA256_NIX32.test(r.narHash)) return `narHash ${JSON.stringify(r.narHash)} is not sha256:<52 nix32>`;
  if (typeof r.compression !== "string" || !NARINFO_COMPRESSIONS.has(r.compression)) return `compression ${JSON.stringify(r.compression)} is not one Nix knows`;
  return null;
}

function stagedNarProblem(v: unknown): string | null {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "not an object";
  const r = v as Record<string, unknown>;
  if (typeof r.object !== "string" || r.object.length === 0) return "object is not a name";
  if (typeof r.size !== "number" || !Number.isSafeInteger(r.size) || r.size < 0) return "size is not a byte count";
  if (typeof r.sha256 !== "string") return "sha256 is not a string";
  if (typeof r.createdAt !== "string") return "createdAt is not a string";
  return null;
}

function checkRealisationJson(id: string, json: Uint8Array): void {
  try {
    JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(json));
  } catch (err) {
    throw new FormatError("catalog.realisation-json", `realisation ${id} is not JSON: ${(err as Error).message}`, { cause: err });
  }
}
