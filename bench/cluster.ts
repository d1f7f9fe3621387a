// Cluster benchmarks: the whole single-machine cache (cli/all-in-one.ts, a local nats-server)
// measured end to end, each figure beside a baseline run in the same process on the same bytes:
//  - ingest MB/s via NATS (IngestClient) and via HTTP PUT (nar + narinfo, as `nix copy` does);
//    baseline: the same bytes published to a plain JetStream stream in 64 KiB messages, and
//    PUT to a Node HTTP server that writes them to a file;
//  - NAR download MB/s, `.nar.zst` and `.nar`, hot-chunk cache cold then warm;
//    baseline: the same NAR served as a static file by Node's own HTTP server;
//  - narinfo latency p50/p99 with 64 concurrent clients; baseline: Node's HTTP server answering
//    the same narinfo text from memory.
import { createReadStream } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { Agent, createServer, request, type IncomingMessage, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { loadConfig } from "../shared/config.ts";
import { silentLogger } from "../shared/log.ts";
import { generateSecretKey } from "../shared/signing.ts";
import { ingestClientFor } from "../shared/nats/ingest-client.ts";
import { startAllInOne, type AllInOne } from "../cli/all-in-one.ts";
import { makeBenchNar, type BenchNar } from "./nar-inputs.ts";
import type { BenchRow } from "./run.ts";

const MiB = 1024 * 1024;
const agent = new Agent({ keepAlive: true, maxSockets: 64 });

interface HttpResult {
  status: number;
  bytes: number;
}

function http(method: string, url: string, body?: Uint8Array, headers: Record<string, string> = {}): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent, headers: body ? { "content-length": String(body.length), ...headers } : headers }, (res: IncomingMessage) => {
      let bytes = 0;
      res.on("data", (d: Buffer) => (bytes += d.length));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, bytes }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

function narinfoText(nar: BenchNar): string {
  return [
    `StorePath: ${nar.storePath}`,
    `URL: nar/${nar.narHash.slice("sha256:".length)}.nar`,
    `Compression: none`,
    `FileHash: ${nar.narHash}`,
    `FileSize: ${nar.narSize}`,
    `NarHash: ${nar.narHash}`,
    `NarSize: ${nar.narSize}`,
    `References: `,
    ``,
  ].join("\n");
}

async function timed<T>(fn: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const start = process.hrtime.bigint();
  const value = await fn();
  return { seconds: Number(process.hrtime.bigint() - start) / 1e9, value };
}

const mbps = (bytes: number, seconds: number) => bytes / MiB / seconds;

function listen(server: Server): Promise<string> {
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => {
    const address = server.address();
    resolve(`http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`);
  }));
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function latencies(url: string, total: number, concurrency: number): Promise<number[]> {
  const times: number[] = [];
  let next = 0;
  const worker = async () => {
    while (next < total) {
      next++;
      const start = process.hrtime.bigint();
      const res = await http("GET", url);
      if (res.status !== 200) throw new Error(`GET ${url}: ${res.status}`);
      times.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return times.sort((a, b) => a - b);
}

export async function run(): Promise<BenchRow[]> {
  const sizeMiB = Number(process.env.BENCH_CLUSTER_MIB ?? 128);
  const narMiB = 16;
  const count = Math.max(1, Math.round(sizeMiB / narMiB));
  const dir = await mkdtemp(join(tmpdir(), "nixcas-bench-"));
  // Uploads without a token, at full speed: auth is not what is measured.
  const config = loadConfig({ NIXCAS_DATA_DIR: dir, NIXCAS_HTTP_HOST: "127.0.0.1", NIXCAS_HTTP_PORT: "0", NIXCAS_LOG_LEVEL: "error", NIXCAS_ALLOW_ANONYMOUS_PUSH: "1", NIXCAS_UPLOAD_RATE: "1000000", NIXCAS_UPLOAD_BURST: "1000000" });
  let cluster: AllInOne | null = null;
  const rows: BenchRow[] = [];
  const baselineServers: Server[] = [];
  try {
    cluster = await startAllInOne({ config, secretKey: generateSecretKey("bench-1"), logger: silentLogger });
    const gateway = `http://127.0.0.1:${cluster.gatewayPort}`;
    const natsNars = Array.from({ length: count }, (_, i) => makeBenchNar(`bench-nats-${i}`, narMiB * MiB));
    const httpNars = Array.from({ length: count }, (_, i) => makeBenchNar(`bench-http-${i}`, narMiB * MiB));
    const totalBytes = natsNars.reduce((n, x) => n + x.narSize, 0);

    // Baseline for ingest: the same bytes into a plain stream, 64 KiB messages, 32 in flight.
    const { jsm, js } = cluster.topology;
    await jsm.streams.add({ name: "BENCH_BASELINE", subjects: ["bench.baseline.>"], max_bytes: 4 * 1024 * MiB });
    const publishBaseline = await timed(async () => {
      let inFlight: Promise<unknown>[] = [];
      for (const nar of natsNars) {
        for (let off = 0; off < nar.bytes.length; off += 64 * 1024) {
          inFlight.push(js.publish(`bench.baseline.${off % 256}`, nar.bytes.subarray(off, off + 64 * 1024)));
          if (inFlight.length >= 32) {
            await Promise.all(inFlight);
            inFlight = [];
          }
        }
      }
      await Promise.all(inFlight);
    });
    await jsm.streams.delete("BENCH_BASELINE");
    const publishRate = mbps(totalBytes, publishBaseline.seconds);

    const client = ingestClientFor(cluster.topology);
    const natsIngest = await timed(async () => {
      for (const nar of natsNars) {
        const { uploadId } = await client.uploadNar(
          { storePath: nar.storePath, narHash: nar.narHash, narSize: nar.narSize, references: [], deriver: null, ca: null, sigs: [] },
          nar.bytes,
        );
        const status = await client.waitFor(uploadId, 120_000);
        if (status.state !== "done") throw new Error(`ingest of ${nar.storePath} ended ${status.state}: ${status.reason ?? ""}`);
      }
    });
    rows.push({ suite: "cluster", case: `ingest via NATS (${count}×${narMiB} MiB NARs)`, value: mbps(totalBytes, natsIngest.seconds), unit: "MB/s", baseline: publishRate, baselineName: "JetStream publish, 64 KiB msgs" });

    // Baseline for HTTP upload: a Node server that writes PUT bodies to a file.
    const sinkFile = join(dir, "sink");
    const sink = createServer((req, res) => {
      pipeline(req, createWriteStream(sinkFile)).then(() => res.writeHead(204).end(), () => res.writeHead(400).end());
    });
    baselineServers.push(sink);
    const sinkUrl = await listen(sink);
    const putBaseline = await timed(async () => {
      for (const nar of httpNars) {
        const res = await http("PUT", `${sinkUrl}/nar/x.nar`, nar.bytes);
        if (res.status !== 204) throw new Error(`baseline PUT: ${res.status}`);
      }
    });
    const httpIngest = await timed(async () => {
      for (const nar of httpNars) {
        const narRes = await http("PUT", `${gateway}/nar/${nar.narHash.slice(7)}.nar`, nar.bytes, { "content-type": "application/x-nix-nar" });
        if (narRes.status >= 300) throw new Error(`PUT nar: ${narRes.status}`);
        const infoRes = await http("PUT", `${gateway}/${nar.hashPart}.narinfo`, Buffer.from(narinfoText(nar)), { "content-type": "text/x-nix-narinfo" });
        if (infoRes.status >= 300) throw new Error(`PUT narinfo: ${infoRes.status}`);
      }
    });
    rows.push({ suite: "cluster", case: `ingest via HTTP PUT (${count}×${narMiB} MiB)`, value: mbps(totalBytes, httpIngest.seconds), unit: "MB/s", baseline: mbps(totalBytes, putBaseline.seconds), baselineName: "Node HTTP PUT to a file" });

    // Downloads: one NAR at a time; cold = first read through this gateway, warm = second.
    const staticFile = join(dir, "static.nar");
    const sample = natsNars[0]!;
    await writeFile(staticFile, sample.bytes);
    const staticServer = createServer((_req, res) => {
      res.writeHead(200, { "content-length": String(sample.narSize) });
      createReadStream(staticFile).pipe(res);
    });
    baselineServers.push(staticServer);
    const staticUrl = await listen(staticServer);
    const download = async (url: string, rounds: number) => {
      const t = await timed(async () => {
        let bytes = 0;
        for (let i = 0; i < rounds; i++) {
          const res = await http("GET", url);
          if (res.status !== 200) throw new Error(`GET ${url}: ${res.status}`);
          bytes += res.bytes;
        }
        return bytes;
      });
      return mbps(sample.narSize * rounds, t.seconds);
    };
    const staticRate = await download(staticUrl, 4);
    const narHash32 = sample.narHash.slice(7);
    for (const [ext, nar] of [["nar.zst", natsNars[1] ?? sample], ["nar", natsNars[2] ?? sample]] as const) {
      const url = `${gateway}/nar/${nar.narHash.slice(7)}.${ext}`;
      const cold = await download(url, 1);
      const warm = await download(url, 4);
      rows.push({ suite: "cluster", case: `download .${ext}, hot cache cold`, value: cold, unit: "MB/s", baseline: staticRate, baselineName: "Node static file" });
      rows.push({ suite: "cluster", case: `download .${ext}, hot cache warm`, value: warm, unit: "MB/s", baseline: staticRate, baselineName: "Node static file" });
    }
    void narHash32;

    // narinfo latency at 64 concurrent clients.
    const text = narinfoText(sample);
    const memoryServer = createServer((_req, res) => res.writeHead(200, { "content-type": "text/x-nix-narinfo", "content-length": String(Buffer.byteLength(text)) }).end(text));
    baselineServers.push(memoryServer);
    const memoryUrl = await listen(memoryServer);
    const requests = Number(process.env.BENCH_NARINFO_REQUESTS ?? 5000);
    const base = await latencies(`${memoryUrl}/x.narinfo`, requests, 64);
    const ours = await latencies(`${gateway}/${sample.hashPart}.narinfo`, requests, 64);
    for (const p of [50, 99]) {
      rows.push({ suite: "cluster", case: `narinfo latency p${p}, 64 clients`, value: percentile(ours, p), unit: "ms", baseline: percentile(base, p), baselineName: "Node HTTP, text from memory", lowerIsBetter: true });
    }
  } finally {
    for (const s of baselineServers) s.close();
    agent.destroy();
    if (cluster) await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}
