// /metrics (Prometheus text) and /healthz (liveness and NATS connectivity, for probes).
import type { Handler } from "./context.ts";

export const serveMetrics: Handler = async (gw, rq) => {
  const body = Buffer.from(gw.metrics.registry.render(), "utf8");
  rq.res.writeHead(200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8", "Content-Length": String(body.length) });
  rq.res.end(rq.head ? undefined : body);
};

export const serveHealth: Handler = async (gw, rq) => {
  const nc = gw.topology.nc;
  const ok = !nc.isClosed() && !nc.isDraining();
  const body = Buffer.from(ok ? "ok\n" : "NATS connection closed\n", "utf8");
  rq.res.writeHead(ok ? 200 : 503, { "Content-Type": "text/plain; charset=utf-8", "Content-Length": String(body.length) });
  rq.res.end(rq.head ? undefined : body);
};
