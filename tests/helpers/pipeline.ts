// The upload pipeline against a private nats-server, for integration tests: the server, a
// connection with the topology, the services chosen (in this process), an IngestClient, and
// small probes (block counts, dead letters, KV keys). `stop()` stops everything it started.
import { createHash } from "node:crypto";
import type { NatsConnection } from "@nats-io/nats-core";
import type { CID } from "multiformats/cid";
import { loadConfig, type NixcasConfig } from "../../shared/config.ts";
import { formatHash, sha256Hash } from "../../shared/hash.ts";
import { silentLogger, type Logger } from "../../shared/log.ts";
import { walkManifest } from "../../shared/manifest.ts";
import { BlockStore } from "../../shared/nats/block-store.ts";
import { Catalog } from "../../shared/nats/catalog.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { ingestClientFor, type IngestClient } from "../../shared/nats/ingest-client.ts";
import { ensureTopology, STREAMS, type Topology } from "../../shared/nats/topology.ts";
import type { UploadMetadata } from "../../shared/nats/work-items.ts";
import { SERVICES } from "../../services/registry.ts";
import { concatBytes } from "./nar-trees.ts";
import { startNatsServer, type NatsServer } from "./nats-server.ts";

export type ServiceName = Exclude<keyof typeof SERVICES, "gateway">;

export interface Pipeline {
  server: NatsServer;
  nc: NatsConnection;
  topology: Topology;
  config: NixcasConfig;
  client: IngestClient;
  /** A block store of the test's own (its stats are the test's, not the services'). */
  blocks: BlockStore;
  catalog: Catalog;
  /** Starts a service in this process (stopped by `stop()`, or by the returned function). */
  start(name: ServiceName): Promise<() => Promise<void>>;
  /** Messages in a stream now. */
  messages(stream: string): Promise<number>;
  /** The dead-lettered items of INGEST or INDEX: body and reason. */
  deadLetters(stream: "INGEST" | "INDEX"): Promise<Array<{ body: Record<string, unknown>; reason: string }>>;
  stop(): Promise<void>;
}

export interface PipelineOptions {
  services?: ServiceName[];
  /** Extra environment for loadConfig (NATS_URL is set by the harness). */
  env?: Record<string, string>;
  logger?: Logger;
}

export async function startPipeline(options: PipelineOptions = {}): Promise<Pipeline> {
  const server = await startNatsServer();
  const stoppers: Array<() => Promise<void>> = [];
  try {
    const config = loadConfig({ NIXCAS_ACK_WAIT_SECONDS: "5", NIXCAS_MAX_DELIVER: "3", ...options.env, NATS_URL: server.url });
    const nc = await connectNats({ servers: [server.url], name: "pipeline-test", reconnectTimeWaitMs: 100 });
    stoppers.push(() => nc.close());
    const topology = await ensureTopology(nc);
    const logger = options.logger ?? silentLogger;
    const start = async (name: ServiceName) => {
      const s = await SERVICES[name]({ topology, config, logger: logger.child({ service: name }), signingKey: noSigningKey });
      let stopped = false;
      const stop = async () => {
        if (stopped) return;
        stopped = true;
        await s.stop();
      };
      stoppers.push(stop);
      return stop;
    };
    for (const name of options.services ?? ["indexer", "chunker", "ingester"]) await start(name);
    return {
      server,
      nc,
      topology,
      config,
      client: ingestClientFor(topology),
      blocks: new BlockStore(topology),
      catalog: new Catalog(topology),
      start,
      messages: async (stream) => (await topology.jsm.streams.info(stream)).state.messages,
      deadLetters: async (stream) => {
        const out: Array<{ body: Record<string, unknown>; reason: string }> = [];
        const info = await topology.jsm.streams.info(STREAMS.deadLetter);
        for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
          const m = await topology.jsm.streams.getMessage(STREAMS.deadLetter, { seq }).catch(() => null);
          if (m === null || m.subject !== `nixcas.deadletter.${stream}`) continue;
          out.push({ body: JSON.parse(new TextDecoder().decode(m.data)), reason: m.header?.get("Nixcas-Reason") ?? "" });
        }
        return out;
      },
      stop: async () => {
        // Services first, all at once (each waits out its pending pull), then the connection.
        const [close, ...services] = stoppers.splice(0);
        await Promise.all(services.map((s) => s().catch(() => {})));
        await close?.().catch(() => {});
        await server.stop();
      },
    };
  } catch (err) {
    for (const s of stoppers.reverse()) await s().catch(() => {});
    await server.stop();
    throw err;
  }
}

/** The pipeline services sign nothing; only the gateway asks for the key. */
async function noSigningKey(): Promise<never> {
  throw new Error("the upload pipeline runs without a gateway: no signing key here");
}

let pathCounter = 0;

/** Upload metadata for `nar` under a fresh store path (hash part from a counter + tag). */
export function metaFor(nar: Uint8Array, name = "test", overrides: Partial<UploadMetadata> = {}): UploadMetadata {
  return {
    storePath: `/nix/store/${fakeHashPart(`${name}-${pathCounter++}-${process.pid}-${Date.now()}`)}-${name}`,
    narHash: formatHash(sha256Hash(new Uint8Array(createHash("sha256").update(nar).digest())), "nix32"),
    narSize: nar.length,
    references: [],
    deriver: null,
    ca: null,
    sigs: [],
    ...overrides,
  };
}

const NIX32 = "0123456789abcdfghijklmnpqrsvwxyz";

/** A valid 32-character hash part derived from `seed`. */
export function fakeHashPart(seed: string): string {
  const digest = createHash("sha256").update(seed).digest();
  let out = "";
  for (let i = 0; i < 32; i++) out += NIX32[digest[i]! % 32];
  return out;
}

export function hashPartOf(storePath: string): string {
  return storePath.slice(storePath.lastIndexOf("/") + 1, storePath.lastIndexOf("/") + 33);
}

/** The NAR a manifest describes, read back through the block store (every chunk verified). */
export async function readNar(blocks: BlockStore, root: CID): Promise<Uint8Array> {
  const pieces: Uint8Array[] = [];
  const load = async (cid: CID) => {
    const bytes = await blocks.get(cid);
    if (bytes === null) throw new Error(`block ${cid} is missing`);
    return bytes;
  };
  for await (const chunk of walkManifest(root, load)) pieces.push(await load(chunk.cid));
  return concatBytes(pieces);
}

export async function collect(source: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const pieces: Uint8Array[] = [];
  for await (const p of source) pieces.push(p);
  return concatBytes(pieces);
}

/** Polls `predicate` until it holds (or throws after `timeoutMs`). */
export async function until(what: string, predicate: () => Promise<boolean> | boolean, timeoutMs = 30_000, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
