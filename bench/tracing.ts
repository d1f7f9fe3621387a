// What tracing costs (docs/operations.md, "Observability"): NATS request/reply round trips through
// shared/nats/service.ts with tracing off (no SDK: the default) against bare `nc.request`, then
// with tracing on (the SDK started as OTEL_EXPORTER_OTLP_ENDPOINT would, exporting OTLP/JSON to a
// sink in this process) against off. Each request on runs inside a client span, so its
// `traceparent` header is written, sent and read, and the service opens a SERVER span for it.
import { createServer } from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../shared/log.ts";
import { connectNats } from "../shared/nats/connect.ts";
import { startLocalNatsServer } from "../shared/nats/local-server.ts";
import { requestService, startMicroservice } from "../shared/nats/service.ts";
import { inSpan, startTelemetry } from "../shared/telemetry.ts";
import type { BenchContext, BenchRow } from "./run.ts";

const SUBJECT = "bench.tracing.echo";
const ROUNDS = 5;
const REQUESTS = 2_000;

/**
 * µs per request of each case: the best of ROUNDS runs of REQUESTS sequential requests, after a
 * warm-up. The cases take turns within each round, so a noisy neighbour slows all of them alike.
 */
async function perRequest(cases: Array<() => Promise<unknown>>): Promise<number[]> {
  for (const send of cases) for (let i = 0; i < 500; i++) await send();
  const best = cases.map(() => Infinity);
  for (let r = 0; r < ROUNDS; r++) {
    for (const [k, send] of cases.entries()) {
      const t0 = performance.now();
      for (let i = 0; i < REQUESTS; i++) await send();
      best[k] = Math.min(best[k]!, ((performance.now() - t0) * 1000) / REQUESTS);
    }
  }
  return best;
}

export async function run(ctx: BenchContext): Promise<BenchRow[]> {
  const storeDir = await mkdtemp(join(tmpdir(), "nixcas-bench-tracing-"));
  let spansExported = 0;
  const sink = createServer((req, res) => {
    let bytes = 0;
    req.on("data", (c: Buffer) => (bytes += c.length));
    req.on("end", () => {
      if (bytes > 0) spansExported++;
      res.writeHead(200, { "Content-Type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => sink.listen(0, "127.0.0.1", resolve));
  const server = await startLocalNatsServer({ storeDir, logger: silentLogger, onGiveUp: (err) => ctx.log(`tracing: the nats-server gave up: ${err.message}`) });
  const nc = await connectNats({ servers: [server.url], name: "bench-tracing", logger: silentLogger });
  try {
    const service = await startMicroservice(nc, {
      name: "bench-tracing",
      version: "0.0.0",
      description: "answers what it is sent",
      endpoints: [{ name: "echo", subject: SUBJECT, handler: async (req) => req.data.length }],
      logger: silentLogger,
    });
    const body = { hello: "nixcas" };
    const bytes = new TextEncoder().encode(JSON.stringify(body));
    ctx.log("tracing: bare nc.request, requestService and requestService in a span, tracing off");
    const [bare, off, offSpan] = (await perRequest([
      () => nc.request(SUBJECT, bytes, { timeout: 5_000 }),
      () => requestService(nc, SUBJECT, body),
      () => inSpan("bench request", {}, () => requestService(nc, SUBJECT, body)),
    ])) as [number, number, number];

    const sinkUrl = `http://127.0.0.1:${(sink.address() as { port: number }).port}`;
    // What an operator sets; the SDK reads them from this process's environment.
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = sinkUrl;
    process.env.OTEL_EXPORTER_OTLP_PROTOCOL = "http/json";
    const telemetry = await startTelemetry("nixcas-bench");
    ctx.log("tracing: requestService in a span, tracing on");
    const [on] = (await perRequest([() => inSpan("bench request", {}, () => requestService(nc, SUBJECT, body))])) as [number];
    await telemetry.shutdown();
    await service.stop();
    const note = `${REQUESTS} sequential requests, best of ${ROUNDS}`;
    return [
      { suite: "tracing", case: "requestService, off", value: off, unit: "µs", baseline: bare, baselineName: "nc.request", lowerIsBetter: true, note },
      { suite: "tracing", case: "requestService in inSpan, off", value: offSpan, unit: "µs", baseline: off, baselineName: "off, no span", lowerIsBetter: true, note },
      { suite: "tracing", case: "requestService in inSpan, on", value: on, unit: "µs", baseline: offSpan, baselineName: "off", lowerIsBetter: true, note: `${note}; ${spansExported} OTLP exports` },
    ];
  } finally {
    await nc.close();
    await server.stop(2_000);
    sink.close();
    await rm(storeDir, { recursive: true, force: true });
  }
}
