// Observability of the lone services (docs/operations.md, "Observability"), run as the containers
// run them (`nixcas service <name>`, one process each) against a real nats-server:
//   - with OTEL_EXPORTER_OTLP_ENDPOINT pointing at an OTLP/HTTP receiver in this test (JSON,
//     OTEL_EXPORTER_OTLP_PROTOCOL=http/json), one narinfo upload is one trace across the
//     gateway, ingester, chunker and indexer, each span the child of the one before;
//   - every service serves Prometheus text on /metrics of NIXCAS_HEALTH_PORT, and the numbers
//     move with the work (work items, dedup hits, integrity errors, hot and cold bytes);
//   - with tracing off, a request carries no trace headers.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createServer, type Server } from "node:http";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { cidForBytes } from "../../shared/cid.ts";
import { IntegrityError } from "../../shared/errors.ts";
import { silentLogger } from "../../shared/log.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { ingestClientFor } from "../../shared/nats/ingest-client.ts";
import { requestService, startMicroservice, type ServiceRequest } from "../../shared/nats/service.ts";
import { TIER_SUBJECTS } from "../../shared/nats/tier-protocol.ts";
import { ensureTopology, type Topology } from "../../shared/nats/topology.ts";
import { formatSecretKey, generateSecretKey } from "../../shared/signing.ts";
import { tracingRequested } from "../../shared/telemetry.ts";
import { compressChunk } from "../../shared/zstd.ts";
import { http, preparePath, uploadPath } from "../helpers/cache-http.ts";
import { narFromTree, pseudoRandomBytes } from "../helpers/nar-trees.ts";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.ts";
import { until } from "../helpers/pipeline.ts";
import { freePort, NIXCAS } from "../helpers/up-process.ts";

/** One span as OTLP/JSON carries it (ids in hex), with its resource's service.name. */
interface ReceivedSpan {
  service: string;
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
}

interface OtlpAttribute {
  key: string;
  value: { stringValue?: string };
}
interface OtlpExport {
  resourceSpans?: Array<{
    resource?: { attributes?: OtlpAttribute[] };
    scopeSpans?: Array<{ spans?: Array<{ name: string; traceId: string; spanId: string; parentSpanId?: string }> }>;
  }>;
}

/** An OTLP/HTTP trace receiver (POST /v1/traces, JSON) that keeps every span it is sent. */
async function startOtlpReceiver(): Promise<{ url: string; spans: ReceivedSpan[]; server: Server }> {
  const spans: ReceivedSpan[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== "/v1/traces" || !(req.headers["content-type"] ?? "").startsWith("application/json")) {
        res.writeHead(400).end();
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as OtlpExport;
      for (const rs of body.resourceSpans ?? []) {
        const service = rs.resource?.attributes?.find((a) => a.key === "service.name")?.value.stringValue ?? "?";
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) spans.push({ service, name: s.name, traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId ?? "" });
        }
      }
      res.writeHead(200, { "Content-Type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, spans, server };
}

/** Sum of a series on a Prometheus text page, over the label sets that include `labels`; null when the metric is absent. */
function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | null {
  let sum: number | null = null;
  for (const line of text.split("\n")) {
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const set = m[2] ?? "";
    if (Object.entries(labels).every(([k, v]) => set.includes(`${k}="${v}"`))) sum = (sum ?? 0) + Number(m[3]);
  }
  return sum;
}

const LONE_SERVICES = ["indexer", "chunker", "ingester", "tierer", "gateway"] as const;
type LoneService = (typeof LONE_SERVICES)[number];
const PUSH_TOKEN = "telemetry-test-push-token";

describe("lone services with tracing on", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let topology: Topology;
  let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>;
  let dir: string;
  let gateway: string;
  const healthPorts = new Map<LoneService, number>();
  const children: Array<{ name: LoneService; child: ChildProcess; output(): string }> = [];
  const metricsOf = async (service: LoneService) => (await http(`http://127.0.0.1:${healthPorts.get(service)}/metrics`)).text;

  before(async () => {
    nats = await startNatsServer();
    nc = await connectNats({ servers: [nats.url], name: "telemetry-test", logger: silentLogger });
    // What `nixcas setup` does: the lone services only open the topology.
    topology = await ensureTopology(nc);
    receiver = await startOtlpReceiver();
    dir = await mkdtemp(join(tmpdir(), "nixcas-telemetry-"));
    const keyFile = join(dir, "signing.key");
    await writeFile(keyFile, formatSecretKey(generateSecretKey("telemetry-test-1")));
    const httpPort = await freePort();
    for (const name of LONE_SERVICES) {
      healthPorts.set(name, await freePort());
      // Spawned here, not with spawnNixcas: its `after` would end them with this `before` hook.
      const child = spawn(process.execPath, [NIXCAS, "service", name], {
        stdio: ["ignore", "pipe", "pipe"],
        env: {
          ...process.env,
          NATS_URL: nats.url,
          NIXCAS_HTTP_HOST: "127.0.0.1",
          NIXCAS_HTTP_PORT: String(httpPort),
          NIXCAS_HEALTH_PORT: String(healthPorts.get(name)),
          NIXCAS_SECRET_KEY_FILE: keyFile,
          NIXCAS_PUSH_TOKEN: PUSH_TOKEN,
          NIXCAS_COLD_DIR: join(dir, "cold"),
          NIXCAS_LOG_LEVEL: "warn",
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
          OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
          // Export within 100 ms of a span's end, so the test does not wait 5 s per batch.
          OTEL_BSP_SCHEDULE_DELAY: "100",
        },
      });
      let output = "";
      child.stdout!.on("data", (d: Buffer) => (output += d.toString("utf8")));
      child.stderr!.on("data", (d: Buffer) => (output += d.toString("utf8")));
      children.push({ name, child, output: () => output });
    }
    for (const { name, output } of children) {
      await until(
        `the ${name} to be ready`,
        async () => (await http(`http://127.0.0.1:${healthPorts.get(name)}/readyz`).catch(() => ({ status: 0 }))).status === 200,
        60_000,
        100,
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n${output()}`);
      });
    }
    gateway = `http://127.0.0.1:${httpPort}`;
  });

  after(async () => {
    for (const { child } of children) child.kill("SIGKILL");
    receiver?.server.close();
    await nc?.close();
    await nats?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("one upload is one trace: gateway PUT narinfo → ingest nar → chunk nar → index path", async () => {
    const up = preparePath({ nar: narFromTree("one trace, four services\n") });
    const { nar, narinfo } = await uploadPath(gateway, up, PUSH_TOKEN);
    assert.equal(nar.status, 204, nar.text);
    assert.equal(narinfo.status, 204, narinfo.text);
    await until("the path to be served", async () => (await http(`${gateway}/${up.hashPart}.narinfo`)).status === 200, 60_000, 50);

    const named = (name: string) => receiver.spans.find((s) => s.name === name);
    await until("the indexer's span to be exported", () => named("index path") !== undefined, 30_000, 50);
    const root = named("gateway PUT narinfo");
    assert.ok(root, `no "gateway PUT narinfo" span among ${receiver.spans.map((s) => s.name).join(", ")}`);
    const trace = receiver.spans.filter((s) => s.traceId === root.traceId);
    const one = (name: string, service: string): ReceivedSpan => {
      const found = trace.filter((s) => s.name === name);
      assert.equal(found.length, 1, `one "${name}" span in the upload's trace; got ${trace.map((s) => `${s.service}/${s.name}`).join(", ")}`);
      assert.equal(found[0]!.service, service, `"${name}" is the ${service}'s`);
      return found[0]!;
    };
    const ingest = one("ingest nar", "nixcas-ingester");
    const chunk = one("chunk nar", "nixcas-chunker");
    const index = one("index path", "nixcas-indexer");
    assert.equal(root.service, "nixcas-gateway");
    assert.equal(root.parentSpanId, "", "the gateway's HTTP span starts the trace");
    assert.equal(ingest.parentSpanId, root.spanId, "the ingester's span is the gateway's child");
    assert.equal(chunk.parentSpanId, ingest.spanId, "the chunker's span continues the INGEST item's trace");
    assert.equal(index.parentSpanId, chunk.spanId, "the indexer's span continues the INDEX item's trace");
    // The NAR PUT before it is a request of its own (the bytes are staged): a trace of its own.
    assert.ok(receiver.spans.some((s) => s.name === "gateway PUT nar" && s.traceId !== root.traceId));
  });

  test("every service serves /metrics on its health port, and the numbers move with the work", async () => {
    const before = { chunker: await metricsOf("chunker"), indexer: await metricsOf("indexer"), ingester: await metricsOf("ingester") };
    const ingestDone = metricValue(before.chunker, "nixcas_work_items_total", { stream: "INGEST", outcome: "done" })!;
    const indexDone = metricValue(before.indexer, "nixcas_work_items_total", { stream: "INDEX", outcome: "done" })!;
    const dedupBefore = metricValue(before.chunker, "nixcas_chunker_dedup_hits_total")!;
    const storedBefore = metricValue(before.chunker, "nixcas_chunker_blocks_stored_total")!;
    const narsOk = metricValue(before.ingester, "nixcas_service_requests_total", { endpoint: "nar", outcome: "ok" })!;
    assert.equal(metricValue(before.chunker, "nixcas_work_queue_items", { stream: "INGEST" }), 0, "nothing waits on INGEST");
    assert.equal(metricValue(before.indexer, "nixcas_work_queue_oldest_item_age_seconds", { stream: "INDEX" }), 0);

    // The same file contents under two store paths: the second stores no new chunk of it.
    const contents = pseudoRandomBytes(256 * 1024, 91);
    for (const name of ["first", "second"]) {
      const up = preparePath({ nar: narFromTree({ dir: { "data.bin": contents, [`${name}.txt`]: `${name}\n` } }), name });
      const { narinfo } = await uploadPath(gateway, up, PUSH_TOKEN);
      assert.equal(narinfo.status, 204, narinfo.text);
      await until(`${name} to be served`, async () => (await http(`${gateway}/${up.hashPart}.narinfo`)).status === 200, 60_000, 50);
    }
    const chunker = await metricsOf("chunker");
    assert.equal(metricValue(chunker, "nixcas_work_items_total", { stream: "INGEST", outcome: "done" }), ingestDone + 2);
    assert.ok(metricValue(chunker, "nixcas_chunker_blocks_stored_total")! > storedBefore, "new blocks stored");
    assert.ok(metricValue(chunker, "nixcas_chunker_dedup_hits_total")! > dedupBefore, "the second path's shared chunks are dedup hits");
    await until("the indexer to count both items", async () => metricValue(await metricsOf("indexer"), "nixcas_work_items_total", { stream: "INDEX", outcome: "done" }) === indexDone + 2, 10_000, 50);
    assert.equal(metricValue(await metricsOf("ingester"), "nixcas_service_requests_total", { endpoint: "nar", outcome: "ok" }), narsOk + 2);

    // A pushed block whose bytes are not what its CID names is an integrity error of the ingester.
    const claimed = cidForBytes(pseudoRandomBytes(4096, 92));
    const other = pseudoRandomBytes(4096, 93);
    await assert.rejects(ingestClientFor(topology).putBlock(claimed, compressChunk(other), other.length), IntegrityError);
    assert.equal(metricValue(await metricsOf("ingester"), "nixcas_service_requests_total", { endpoint: "block", outcome: "integrity" }), 1);

    // Hot bytes are what BLOCKS holds; a tiering pass that takes everything moves them to cold packs.
    const tiererBefore = await metricsOf("tierer");
    assert.ok(metricValue(tiererBefore, "nixcas_tier_bytes", { tier: "hot" })! > 0);
    assert.equal(metricValue(tiererBefore, "nixcas_tier_bytes", { tier: "cold" }), 0);
    await requestService(nc, TIER_SUBJECTS.run, { coldAfterMs: 0 }, { timeoutMs: 120_000 });
    const tierer = await metricsOf("tierer");
    assert.ok(metricValue(tierer, "nixcas_tier_bytes", { tier: "cold" })! > 0, "sealed packs in the cold tier");
    assert.equal(metricValue(tierer, "nixcas_service_requests_total", { endpoint: "run", outcome: "ok" }), 1);

    // The gateway's own metrics are on the same registry, so its health port serves them too.
    const gatewayText = await metricsOf("gateway");
    const puts = metricValue(gatewayText, "nixcas_gateway_requests_total", { route: "narinfo", method: "PUT", status: "204" })!;
    assert.ok(puts >= 3);
    // Every answered request is one observation of the latency histogram.
    const putLatency = { route: "narinfo", method: "PUT" };
    assert.equal(metricValue(gatewayText, "nixcas_gateway_request_duration_seconds_count", putLatency), puts);
    assert.equal(metricValue(gatewayText, "nixcas_gateway_request_duration_seconds_bucket", { ...putLatency, le: "+Inf" }), puts);
    assert.ok(metricValue(gatewayText, "nixcas_gateway_request_duration_seconds_sum", putLatency)! > 0);
  });
});

test("tracing is on only when the standard OTEL_* variables ask for it", () => {
  assert.equal(tracingRequested({}), false, "off by default");
  assert.equal(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" }), true);
  assert.equal(tracingRequested({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://collector:4318/v1/traces" }), true);
  assert.equal(tracingRequested({ OTEL_TRACES_EXPORTER: "otlp" }), true);
  assert.equal(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318", OTEL_SDK_DISABLED: "true" }), false);
  assert.equal(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318", OTEL_TRACES_EXPORTER: "none" }), false);
  assert.equal(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: " " }), false, "blank is unset");
});

test("tracing off: a request carries no trace headers", async () => {
  const nats = await startNatsServer({ jetstream: false });
  const nc = await connectNats({ servers: [nats.url], name: "telemetry-off", logger: silentLogger });
  try {
    const seen: ServiceRequest[] = [];
    const service = await startMicroservice(nc, {
      name: "telemetry-off",
      version: "0.0.0",
      description: "records what it is sent",
      endpoints: [{ name: "echo", subject: "test.telemetry.echo", handler: async (req) => void seen.push(req) }],
      logger: silentLogger,
    });
    await requestService(nc, "test.telemetry.echo", { hello: 1 });
    await service.stop();
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.headers?.get("traceparent") ?? "", "", "no traceparent");
    assert.equal(seen[0]!.headers, undefined, "no headers at all");
  } finally {
    await nc.close();
    await nats.stop();
  }
});
