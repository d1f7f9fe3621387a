// /metrics (Prometheus text), /healthz (liveness) and /readyz (readiness), for probes.
// Liveness only says the process loop answers: a gateway whose NATS is away recovers by itself
// when NATS is back, so it must not be restarted for it. Readiness says whether it can serve:
// NATS connected, JetStream answering, KV readable (shared/nats/readiness.ts); 503 with the
// reason as JSON when not.
import { readinessOf } from "../../shared/nats/readiness.ts";
import type { Handler } from "./context.ts";

export const serveMetrics: Handler = async (gw, rq) => {
  const body = Buffer.from(await gw.metrics.registry.scrape(), "utf8");
  rq.res.writeHead(200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8", "Content-Length": String(body.length) });
  rq.res.end(rq.head ? undefined : body);
};

export const serveHealth: Handler = async (_gw, rq) => {
  const body = Buffer.from("ok\n", "utf8");
  rq.res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8", "Content-Length": String(body.length), "Cache-Control": "no-store" });
  rq.res.end(rq.head ? undefined : body);
};

export const serveReady: Handler = async (gw, rq) => {
  const report = await readinessOf(gw.topology.nc).check();
  const body = Buffer.from(JSON.stringify(report) + "\n", "utf8");
  rq.res.writeHead(report.ready ? 200 : 503, { "Content-Type": "application/json", "Content-Length": String(body.length), "Cache-Control": "no-store" });
  rq.res.end(rq.head ? undefined : body);
};
