// Typed access to the KV buckets (docs/architecture.md, "NATS topology"): each key is checked
// before it is used, each value is checked when it is read back, so a bad key is a precise
// error and a damaged record is never believed.
import { CID } from "multiformats/cid";
import type { KV } from "@nats-io/kv";
import { checkLink, DAG_CBOR_CODEC, type EncodedBlock } from "../block.ts";
import { cidForBytes } from "../cid.ts";
import { FormatError, IntegrityError, NixcasError } from "../errors.ts";
import { decodePathInfo, type PathInfo } from "../path-info.ts";
import { isValidHashPart, parseStorePath } from "../store-path.ts";
import { mapBounded } from "./flow-control.ts";
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

const NIX32_NAR_HASH = /^[0-9a-df-np-sv-z]{52}$/;
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

  // --- nars: NAR hash (52 nix32) -> manifest root CID ---

  async manifestForNar(narHashNix32: string): Promise<CID | null> {
    return this.#getCid("nars", checkNarHash(narHashNix32));
  }

  async putNar(narHashNix32: string, root: CID): Promise<void> {
    await this.#putCid("nars", checkNarHash(narHashNix32), root);
  }

  // --- listings: hash part -> blob manifest CID of its `.ls` ---

  async getListing(hashPart: string): Promise<CID | null> {
    return this.#getCid("listings", checkHashPart(hashPart));
  }

  async putListing(hashPart: string, root: CID): Promise<void> {
    await this.#putCid("listings", checkHashPart(hashPart), root);
  }

  // --- logs: escaped drv base name -> blob manifest CID ---

  async getLog(drvBaseName: string): Promise<CID | null> {
    return this.#getCid("logs", escapeKey(drvBaseName));
  }

  async putLog(drvBaseName: string, root: CID): Promise<void> {
    await this.#putCid("logs", escapeKey(drvBaseName), root);
  }

  // --- realisations: escaped id -> the `.doi` JSON verbatim ---

  async getRealisation(id: string): Promise<Uint8Array | null> {
    return this.#get("realisations", escapeKey(id));
  }

  async putRealisation(id: string, json: Uint8Array): Promise<void> {
    try {
      JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(json));
    } catch (err) {
      throw new FormatError("catalog.realisation-json", `realisation ${id} is not JSON: ${(err as Error).message}`, { cause: err });
    }
    await this.#put("realisations", escapeKey(id), json);
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

function stagedNarProblem(v: unknown): string | null {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "not an object";
  const r = v as Record<string, unknown>;
  if (typeof r.object !== "string" || r.object.length === 0) return "object is not a name";
  if (typeof r.size !== "number" || !Number.isSafeInteger(r.size) || r.size < 0) return "size is not a byte count";
  if (typeof r.sha256 !== "string") return "sha256 is not a string";
  if (typeof r.createdAt !== "string") return "createdAt is not a string";
  return null;
}
