// The mark of garbage collection (docs/tiering.md, "Garbage collection and pins"): every block a
// live root needs, by (the first 52 bits of) their sha256 digests — the key of a block
// everywhere: its BLOCKS subject, its KV `cold` record. A root's manifest is walked through its
// interior nodes only — chunks are never read — and each manifest once however many paths
// share it.
//
// A root whose blocks cannot be read (a missing or corrupt manifest node, a damaged record)
// leaves the mark incomplete: the chunks below the bad node are unknown, so the pass must not
// sweep. Such problems are collected, with where they are, for the report.
import type { CID } from "multiformats/cid";
import { DAG_CBOR_CODEC, cidForBytes, parseCid } from "../../shared/cid.ts";
import { NixcasError } from "../../shared/errors.ts";
import { formatDigest, sha256Hash } from "../../shared/hash.ts";
import type { Logger } from "../../shared/log.ts";
import { walkManifest } from "../../shared/manifest.ts";
import { decodePathInfo, type PathInfo } from "../../shared/path-info.ts";
import type { BlockStore } from "../../shared/nats/block-store.ts";
import type { Catalog } from "../../shared/nats/catalog.ts";
import { mapBounded } from "../../shared/nats/flow-control.ts";
import { scanKv } from "../../shared/nats/stream-scan.ts";
import type { KvBucketName, Topology } from "../../shared/nats/topology.ts";

/** Manifests walked at once. */
const WALKS_IN_FLIGHT = 16;

/** A path as KV `paths` holds it. */
export interface CatalogPath {
  hashPart: string;
  info: PathInfo;
  /** CID of the PathInfo node (the KV value's bytes). */
  cid: CID;
  /** NAR hash in nix32: the key of its KV `nars` record. */
  narHash: string;
}

/** The hex sha256 digest of a block: its key in BLOCKS subjects and in KV `cold`. */
export function digestHex(cid: CID): string {
  return Buffer.from(cid.multihash.digest).toString("hex");
}

/** Every path in KV `paths`; a record that does not decode is a problem (and blocks the sweep). */
export async function readCatalogPaths(topology: Topology, problems: string[]): Promise<Map<string, CatalogPath>> {
  const paths = new Map<string, CatalogPath>();
  for await (const entry of scanKv(topology, "paths")) {
    const cid = cidForBytes(entry.value, DAG_CBOR_CODEC);
    try {
      const info = decodePathInfo(entry.value, cid);
      paths.set(entry.key, { hashPart: entry.key, info, cid, narHash: formatDigest(sha256Hash(info.narHash), "nix32") });
    } catch (err) {
      problems.push(`KV paths/${entry.key} does not decode (${(err as Error).message}); remove it with \`nixcas path delete ${entry.key}\``);
    }
  }
  return paths;
}

/** The manifest CID a KV listings/logs entry holds. */
function manifestOfEntry(bucket: KvBucketName, key: string, value: Uint8Array): CID {
  try {
    return parseCid(new TextDecoder().decode(value));
  } catch (err) {
    throw new NixcasError("gc.record", `KV ${bucket}/${key} does not hold a manifest CID: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The mark keeps the first 52 bits of each digest as a number (exact in a double): a Set of
 * numbers is several times smaller than one of 64-character strings. A collision can only make
 * a dead block look live (it is kept), never the reverse, and is rare below billions of blocks.
 */
function markKey(hex: string): number {
  return parseInt(hex.slice(0, 13), 16);
}

export class LiveBlocks {
  /** markKey of every block marked live. */
  readonly #marked = new Set<number>();
  /** NAR hashes (nix32) some live path uses. */
  readonly liveNars = new Set<string>();
  readonly problems: string[];
  readonly #walked = new Set<string>();
  readonly #blocks: BlockStore;
  readonly #catalog: Catalog;
  readonly #logger: Logger;
  #lastLog = Date.now();

  constructor(blocks: BlockStore, catalog: Catalog, logger: Logger, problems: string[]) {
    this.#blocks = blocks;
    this.#catalog = catalog;
    this.#logger = logger;
    this.problems = problems;
  }

  /** Whether the block with this hex sha256 is marked live. */
  has(hex: string): boolean {
    return this.#marked.has(markKey(hex));
  }

  /** Blocks marked so far. */
  get size(): number {
    return this.#marked.size;
  }

  #mark(cid: CID): void {
    this.#marked.add(markKey(digestHex(cid)));
  }

  /** A path: its PathInfo node, and its NAR's manifest tree and chunks (the one KV `nars` names and the one the PathInfo names). */
  async markPaths(paths: Iterable<CatalogPath>): Promise<void> {
    const list = [...paths];
    for (const p of list) {
      this.#mark(p.cid);
      this.liveNars.add(p.narHash);
    }
    await mapBounded(list, WALKS_IN_FLIGHT, async (p) => {
      const where = p.info.storePath;
      let record;
      try {
        record = await this.#catalog.getNar(p.narHash);
      } catch (err) {
        this.problems.push(`${where}: ${(err as Error).message}`);
      }
      if (record) await this.markManifest(record.manifest, where);
      await this.markManifest(p.info.manifest, where);
    });
  }

  /** Every entry of KV `listings` or `logs` (blob manifests), except the keys in `except`. */
  async markBlobBucket(topology: Topology, bucket: "listings" | "logs", except: ReadonlySet<string> = new Set()): Promise<number> {
    const roots: Array<{ cid: CID; where: string }> = [];
    for await (const entry of scanKv(topology, bucket)) {
      if (except.has(entry.key)) continue;
      try {
        roots.push({ cid: manifestOfEntry(bucket, entry.key, entry.value), where: `KV ${bucket}/${entry.key}` });
      } catch (err) {
        this.problems.push((err as Error).message);
      }
    }
    await mapBounded(roots, WALKS_IN_FLIGHT, (r) => this.markManifest(r.cid, r.where));
    return roots.length;
  }

  /** A manifest (NAR or blob): its nodes and chunks. Walked once per pass. */
  async markManifest(root: CID, where: string): Promise<void> {
    const rootHex = digestHex(root);
    this.#mark(root);
    if (this.#walked.has(rootHex)) return;
    this.#walked.add(rootHex);
    const load = async (cid: CID): Promise<Uint8Array> => {
      const bytes = await this.#blocks.get(cid);
      if (bytes === null) throw new NixcasError("gc.node-missing", `manifest node ${cid} is missing`);
      return bytes;
    };
    try {
      for await (const chunk of walkManifest(root, load, { onNode: (cid) => this.#mark(cid) })) {
        this.#mark(chunk.cid);
      }
    } catch (err) {
      this.problems.push(`${where}: manifest ${root} cannot be walked (${(err as Error).message}); its chunks are unknown, so nothing is swept`);
    }
    this.#progress();
  }

  #progress(): void {
    const now = Date.now();
    if (now - this.#lastLog < 10_000) return;
    this.#lastLog = now;
    this.#logger.info("gc mark in progress", { manifests: this.#walked.size, marked: this.#marked.size });
  }
}
