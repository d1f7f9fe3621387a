// `nixcas verify [--repair] [--store S] [--jobs N] [--json]`: the scrub. Walks every advertised
// path (KV `paths`) and every block it needs — its PathInfo node, the manifest nodes and chunks
// of its NAR, its `.ls` blob — decodes every frame with the gateway's strict reader and hashes
// it against its CID (`verifyFrame`), and checks the NAR record's FileHash/FileSize against the
// frames as stored. Progress goes to stderr, then a summary naming each bad block and path;
// exit 1 when anything is bad, 2 for usage.
//
// --repair puts good bytes where a copy exists: a PathInfo node from its KV `paths` value (the
// same encoded bytes), chunks, manifest nodes and the listing from the local Nix store (the path
// dumped, NarHash/NarSize checked, re-chunked with this cache's FastCDC parameters; `put`
// replaces a corrupt stored block). Then a NAR record whose FileHash no longer matches its frames
// (a repaired chunk compressed differently) is rewritten with compare-and-set. The command acts
// here as the indexer's admin tool on KV `nars` rather than asking the indexer: it already reads
// every frame to compute the hash, and a request would only ship that work to another process;
// the compare-and-set on the record's revision keeps it safe beside a running indexer.
//
// Chunks in the cold tier are checked the same way, from ranged reads of their packs; a bad one
// is named with its pack and offset, and a pack that cannot be read (missing, archived) names
// every block it should hold and every path that needs them.
//
// Memory is bounded: --jobs paths at once, each reading at most READ_AHEAD frames ahead.
import type { CID } from "multiformats/cid";
import type { KV } from "@nats-io/kv";
import { ColdBlocks, coldKeyOf } from "../../shared/cold/cold-blocks.ts";
import { coldStoreOf, defaultColdDir } from "../../shared/cold/cold-store.ts";
import { cidForBytes, RAW_CODEC } from "../../shared/cid.ts";
import type { NixcasConfig } from "../../shared/config.ts";
import { IntegrityError, NixcasError } from "../../shared/errors.ts";
import { chunkStream } from "../../shared/fastcdc.ts";
import { formatDigest, sha256Hash } from "../../shared/hash.ts";
import { ManifestBuilder } from "../../shared/manifest.ts";
import { formatNarListing } from "../../shared/nar-listing.ts";
import { NarVerifier } from "../../shared/nar-verifier.ts";
import { encodePathInfo, type PathInfo } from "../../shared/path-info.ts";
import { compressChunk } from "../../shared/zstd.ts";
import { putBlob } from "../../shared/nats/blob-store.ts";
import { BlockStore } from "../../shared/nats/block-store.ts";
import { Catalog } from "../../shared/nats/catalog.ts";
import { isColdTierError, storedChunks, ZstFileHasher, type ZstFile } from "../../shared/nats/stored-chunks.ts";
import { openTopology } from "../../shared/nats/topology.ts";
import { runNatsCommand } from "../nats-command.ts";
import { narSource, storeAccess, type StoreAccess } from "../push/store-access.ts";

const USAGE = `usage: nixcas verify [--repair] [--store <dir|url>] [--jobs N] [--json]

  Checks every path the cache advertises: every block it needs is present and decodes to its
  CID, and the NAR's FileHash/FileSize match the stored frames. Exit 1 naming each bad block
  and path.

  --repair            put good bytes back where a copy exists (the local Nix store for chunks,
                      manifest nodes and listings; KV for PathInfo nodes) and rewrite NAR
                      records whose FileHash changed; then check again
  --store <dir|url>   the Nix store to repair from, as nix --store (default: this machine's)
  --jobs N            paths checked at once (default 4)
  --json              also print the summary as JSON on stdout

  Environment: NATS_URL (required), NATS_CREDS, NATS_TOKEN, NIXCAS_STORE_DIR, NIXCAS_CHUNK_*,
  NIXCAS_ZSTD_LEVEL.
`;

/** Frames read ahead per path. */
const READ_AHEAD = 16;

interface Args {
  repair: boolean;
  store?: string;
  jobs: number;
  json: boolean;
}

export interface BadBlock {
  cid: string;
  storePath: string;
  reason: string;
}

export interface BadPath {
  storePath: string;
  reason: string;
}

export interface VerifySummary {
  paths: number;
  blocksChecked: number;
  badBlocks: BadBlock[];
  badPaths: BadPath[];
  /** Blocks put back and NAR records rewritten by --repair. */
  repairedBlocks: number;
  repairedRecords: number;
}

function parseArgs(argv: string[]): Args | string {
  const out: Args = { repair: false, jobs: 4, json: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    const value = () => (eq >= 0 ? arg.slice(eq + 1) : argv[++i]);
    if (name === "--repair") out.repair = true;
    else if (name === "--json") out.json = true;
    else if (name === "--store") {
      const v = value();
      if (!v) return "--store needs a value";
      out.store = v;
    } else if (name === "--jobs" || name === "-j") {
      const v = value();
      if (v === undefined || !/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 64) return "--jobs takes a number from 1 to 64";
      out.jobs = Number(v);
    } else return `unknown argument '${arg}'`;
  }
  return out;
}

export async function run(argv: string[]): Promise<number> {
  return runNatsCommand(
    argv,
    { name: "verify", usage: USAGE, parseArgs, natsUrlMissing: "nixcas verify reads the cache over NATS; set NATS_URL to the cache's NATS server" },
    async ({ args, config, logger, nc }) => {
      const topology = await openTopology(nc);
      // Chunks the tierer moved out of BLOCKS are read (ranged) from the cold tier and checked
      // like hot ones. The cold tier as the tierer has it: NIXCAS_S3_*, NIXCAS_COLD_DIR, or the
      // directory of a local `nixcas up`.
      const cold = new ColdBlocks(topology, coldStoreOf(config, defaultColdDir(config)));
      const scrub = new Scrub(new BlockStore(topology, { logger, cold }), cold, topology.kv.cold, new Catalog(topology), config, args.repair ? storeAccess(args.store, config.storeDir) : null);
      const hashParts: string[] = [];
      for await (const key of await topology.kv.paths.keys()) hashParts.push(key);
      hashParts.sort();
      const summary = await scrub.run(hashParts, args.jobs);
      process.stderr.write(formatSummary(summary));
      if (args.json) process.stdout.write(JSON.stringify(summary) + "\n");
      return summary.badBlocks.length + summary.badPaths.length > 0 ? 1 : 0;
    },
  );
}

export function formatSummary(s: VerifySummary): string {
  const lines = [`nixcas verify: ${s.paths} paths, ${s.blocksChecked} blocks checked, ${s.badBlocks.length} bad blocks, ${s.badPaths.length} bad paths`];
  if (s.repairedBlocks + s.repairedRecords > 0) lines.push(`repaired: ${s.repairedBlocks} blocks, ${s.repairedRecords} NAR records`);
  for (const b of s.badBlocks) lines.push(`bad block ${b.cid} (${b.storePath}): ${b.reason}`);
  for (const p of s.badPaths) lines.push(`bad path ${p.storePath}: ${p.reason}`);
  return lines.join("\n") + "\n";
}

/** The result of checking one path. */
interface PathCheck {
  storePath: string;
  blocks: number;
  badBlocks: Array<{ cid: CID; reason: string }>;
  /** Path-level problems (the record, FileHash, a PathInfo that does not decode). */
  problems: string[];
  /** When every chunk was readable: the `.nar.zst` file as stored. */
  zst: ZstFile | null;
  info: PathInfo | null;
  infoCid: CID | null;
}

class Scrub {
  readonly #blocks: BlockStore;
  readonly #cold: ColdBlocks;
  /** KV `cold` (written by the tierer; --repair drops the record of a bad cold copy it replaced). */
  readonly #coldRecords: KV;
  readonly #catalog: Catalog;
  readonly #config: NixcasConfig;
  readonly #repairFrom: StoreAccess | null;
  #checkedPaths = 0;
  #checkedBlocks = 0;
  #bad = 0;
  #lastProgress = 0;

  constructor(blocks: BlockStore, cold: ColdBlocks, coldRecords: KV, catalog: Catalog, config: NixcasConfig, repairFrom: StoreAccess | null) {
    this.#blocks = blocks;
    this.#cold = cold;
    this.#coldRecords = coldRecords;
    this.#catalog = catalog;
    this.#config = config;
    this.#repairFrom = repairFrom;
  }

  async run(hashParts: string[], jobs: number): Promise<VerifySummary> {
    const summary: VerifySummary = { paths: hashParts.length, blocksChecked: 0, badBlocks: [], badPaths: [], repairedBlocks: 0, repairedRecords: 0 };
    let next = 0;
    const worker = async () => {
      while (next < hashParts.length) {
        const hashPart = hashParts[next++]!;
        let check = await this.#checkPath(hashPart);
        summary.blocksChecked += check.blocks;
        if (this.#repairFrom !== null && (check.badBlocks.length > 0 || check.problems.length > 0)) {
          const repaired = await this.#repair(hashPart, check);
          summary.repairedBlocks += repaired.blocks;
          summary.repairedRecords += repaired.records;
          check = await this.#checkPath(hashPart);
          summary.blocksChecked += check.blocks;
        }
        for (const b of check.badBlocks) summary.badBlocks.push({ cid: b.cid.toString(), storePath: check.storePath, reason: b.reason });
        if (check.badBlocks.length > 0 || check.problems.length > 0) {
          summary.badPaths.push({ storePath: check.storePath, reason: [...check.problems, ...(check.badBlocks.length > 0 ? [`${check.badBlocks.length} bad blocks`] : [])].join("; ") });
          this.#bad++;
        }
        this.#checkedPaths++;
        this.#progress(hashParts.length);
      }
    };
    await Promise.all(Array.from({ length: Math.min(jobs, Math.max(hashParts.length, 1)) }, worker));
    if (this.#lastProgress !== 0) process.stderr.write("\n");
    return summary;
  }

  #progress(total: number): void {
    const now = Date.now();
    if (now - this.#lastProgress < 1000 && this.#checkedPaths !== total) return;
    this.#lastProgress = now;
    process.stderr.write(`\rverify: ${this.#checkedPaths}/${total} paths, ${this.#checkedBlocks} blocks, ${this.#bad} bad paths`);
  }

  async #checkPath(hashPart: string): Promise<PathCheck> {
    const check: PathCheck = { storePath: `${this.#config.storeDir}/${hashPart}…`, blocks: 0, badBlocks: [], problems: [], zst: null, info: null, infoCid: null };
    let found;
    try {
      found = await this.#catalog.getPathInfo(hashPart);
    } catch (err) {
      check.problems.push(`KV paths/${hashPart}: ${(err as Error).message}`);
      return check;
    }
    if (found === null) return check; // removed since the listing of keys
    const { info, cid } = found;
    check.storePath = info.storePath;
    check.info = info;
    check.infoCid = cid;
    await this.#checkBlock(cid, check);

    const narHash = formatDigest(sha256Hash(info.narHash), "nix32");
    let record;
    try {
      record = await this.#catalog.getNar(narHash);
    } catch (err) {
      check.problems.push(`KV nars/${narHash}: ${(err as Error).message}`);
    }
    if (record === null) check.problems.push(`no NAR record for sha256:${narHash} in KV nars`);
    const manifest = record?.manifest ?? info.manifest;
    check.zst = await this.#scanManifest(manifest, check);
    if (record && record.zstFileHash !== null && check.zst !== null) {
      if (check.zst.size !== record.zstFileSize || !Buffer.from(check.zst.sha256).equals(record.zstFileHash)) {
        check.problems.push(
          `the stored frames are ${check.zst.size} bytes with sha256:${formatDigest(sha256Hash(check.zst.sha256), "nix32")}, the NAR record (served as FileHash/FileSize) says ${record.zstFileSize} bytes with sha256:${formatDigest(sha256Hash(record.zstFileHash), "nix32")}`,
        );
      }
    }
    const listing = await this.#catalog.getListing(hashPart);
    if (listing !== null) await this.#scanManifest(listing, check);
    return check;
  }

  /** One block on its own (a PathInfo node): present and intact. */
  async #checkBlock(cid: CID, check: PathCheck): Promise<Uint8Array | null> {
    check.blocks++;
    this.#checkedBlocks++;
    try {
      const bytes = await this.#blocks.get(cid);
      if (bytes === null) check.badBlocks.push({ cid, reason: "missing" });
      return bytes;
    } catch (err) {
      if (isColdTierError(err)) {
        check.badBlocks.push({ cid, reason: err.message });
        return null;
      }
      if (!(err instanceof IntegrityError)) throw err;
      check.badBlocks.push({ cid, reason: err.message + (await this.#coldLocation(cid)) });
      this.#blocks.reportCorrupt(cid, err, "verify");
      return null;
    }
  }

  /**
   * Every node and chunk of a manifest (a NAR's or a blob's); the `.nar.zst` file when every
   * chunk is intact. A bad node hides the chunks under it: they are checked after a repair.
   */
  async #scanManifest(root: CID, check: PathCheck): Promise<ZstFile | null> {
    const loadNode = async (cid: CID): Promise<Uint8Array> => {
      const bytes = await this.#checkBlock(cid, check);
      if (bytes === null) throw new NodeUnreadable();
      return bytes;
    };
    const file = new ZstFileHasher();
    let intact = true;
    try {
      for await (const stored of storedChunks(root, this.#blocks, { loadNode, maxInFlight: READ_AHEAD })) {
        const { chunk } = stored;
        check.blocks++;
        this.#checkedBlocks++;
        if (stored.state === "intact") {
          file.add(stored.frame);
          continue;
        }
        intact = false;
        if (stored.state === "missing") {
          check.badBlocks.push({ cid: chunk.cid, reason: "missing" });
          continue;
        }
        if (stored.state === "unreadable") {
          check.badBlocks.push({ cid: chunk.cid, reason: stored.error.message });
          continue;
        }
        const error =
          stored.state === "corrupt" ? stored.error : new IntegrityError("block.size", `block ${chunk.cid} is stored with ${stored.frame.size} bytes, its manifest says ${chunk.size}`);
        check.badBlocks.push({ cid: chunk.cid, reason: error.message + (await this.#coldLocation(chunk.cid)) });
        this.#blocks.reportCorrupt(chunk.cid, error, "verify");
      }
    } catch (err) {
      if (err instanceof NodeUnreadable) return null;
      if (!(err instanceof NixcasError)) throw err;
      // A node that is there and hashes right but does not decode as a manifest node.
      check.problems.push(`manifest ${root}: ${err.message}`);
      return null;
    }
    return intact ? file.finish() : null;
  }

  /** For a bad block read from the cold tier: where its frame is (the pack to look at). */
  async #coldLocation(cid: CID): Promise<string> {
    if ((await this.#blocks.getHot(cid)) !== null) return "";
    const record = await this.#cold.record(cid);
    if (record === null) return "";
    const pack = await this.#cold.pack(record.pack);
    return ` (its cold copy: pack ${record.pack}${pack ? `, object ${pack.key}` : ""}, ${record.length} bytes at offset ${record.offset})`;
  }

  /** Puts back what a copy exists of; rewrites the NAR record when its frames changed. */
  async #repair(hashPart: string, check: PathCheck): Promise<{ blocks: number; records: number }> {
    let blocks = 0;
    let records = 0;
    const bad = new Set(check.badBlocks.map((b) => b.cid.toString()));
    const { info, infoCid } = check;
    if (info === null || infoCid === null) return { blocks, records };
    const put = async (cid: CID, bytes: Uint8Array) => {
      if (!bad.has(cid.toString())) return;
      await this.#blocks.put(cid, compressChunk(bytes, this.#config.chunking.zstdLevel), bytes.length);
      // A bad cold copy must not win over the good one now in BLOCKS: without its record the
      // tierer packs the block anew (and GC reclaims the bad frame with its pack).
      if ((await this.#cold.record(cid)) !== null) await this.#coldRecords.delete(coldKeyOf(cid));
      bad.delete(cid.toString());
      blocks++;
    };
    // The PathInfo node: KV `paths` holds its very bytes.
    const encoded = encodePathInfo(info, { storeDir: this.#config.storeDir });
    if (encoded.cid.equals(infoCid)) await put(encoded.cid, encoded.bytes);

    if (bad.size > 0) {
      await this.#repairFromStore(info, put).catch((err: unknown) => {
        process.stderr.write(`\nnixcas verify: cannot repair ${info.storePath} from the local store: ${(err as Error).message}\n`);
      });
    }

    // A NAR record whose FileHash no longer matches the (now intact) frames.
    const narHash = formatDigest(sha256Hash(info.narHash), "nix32");
    const record = await this.#catalog.getNar(narHash);
    if (record !== null) {
      const recheck: PathCheck = { ...check, blocks: 0, badBlocks: [], problems: [] };
      const zst = await this.#scanManifest(record.manifest, recheck);
      if (zst !== null && (record.zstFileHash === null || zst.size !== record.zstFileSize || !Buffer.from(zst.sha256).equals(record.zstFileHash))) {
        if (await this.#catalog.replaceNarFile(narHash, { manifest: record.manifest, zstFileHash: zst.sha256, zstFileSize: zst.size })) records++;
      }
    }
    return { blocks, records };
  }

  /**
   * The path's NAR from the local store, checked against the PathInfo, re-chunked: `put` gets
   * every chunk and manifest node (it stores the bad ones), the listing is put again. Throws
   * when the local copy is absent or differs.
   */
  async #repairFromStore(info: PathInfo, put: (cid: CID, bytes: Uint8Array) => Promise<void>): Promise<void> {
    const baseName = info.storePath.slice(this.#config.storeDir.length + 1);
    const source = narSource(this.#repairFrom!, baseName, info.storePath);
    const verifier = new NarVerifier({ narHash: info.narHash, narSize: info.narSize }, { bytes: "chunks" });
    const builder = new ManifestBuilder();
    const { minSize, avgSize, maxSize } = this.#config.chunking;
    const nodes: Array<{ cid: CID; bytes: Uint8Array }> = [];
    for await (const chunk of chunkStream(source.bytes, { minSize, avgSize, maxSize })) {
      verifier.write(chunk);
      const cid = cidForBytes(chunk, RAW_CODEC);
      await put(cid, chunk);
      nodes.push(...builder.add({ cid, size: chunk.length }));
    }
    // Throws when the local copy is not the NAR the cache advertises: nothing of it is used then
    // beyond chunks, which `put` verified against their own CIDs anyway.
    const listing = verifier.finish();
    const { blocks: last } = builder.finish(info.narHash, info.narSize);
    for (const node of [...nodes, ...last]) await put(node.cid, node.bytes);
    // The listing blob: putBlob puts every block of it, replacing corrupt ones.
    await putBlob(this.#blocks, formatNarListing(listing), { level: this.#config.chunking.zstdLevel });
  }
}

/** A manifest node was missing or corrupt (already recorded): the walk below it stops. */
class NodeUnreadable extends Error {}
