// /debuginfo/<build id>.debug (`index-debug-info=true`, docs/nix-protocol.md §7.2): an index from
// ELF build ids to debug files inside NARs, read by dwarffs. Decision: accepted (authenticated,
// validated, size-limited) and not stored; GET/HEAD answer 404. Serving it would need a bucket of
// its own and a consumer, and nothing in Nix itself reads it. Because HEAD says 404, Nix
// re-sends these small JSON bodies on every copy: harmless, and honest.
import type { Handler } from "./context.ts";
import { badRequest, notFound } from "./http-errors.ts";
import { collect, decodedBody } from "./request-body.ts";

const DEBUGINFO_MAX_BYTES = 64 * 1024;

export const serveDebugInfo: Handler = async (gw, rq) => {
  await gw.authorize(rq.req, "pull");
  throw notFound(rq.path.slice(1));
};

export const putDebugInfo: Handler = async (gw, rq) => {
  await gw.authorize(rq.req, "push");
  const body = await collect(decodedBody(rq.req, { limit: DEBUGINFO_MAX_BYTES, what: "debuginfo" }));
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch (err) {
    throw badRequest("debuginfo.json", `debuginfo body is not JSON: ${(err as Error).message}`);
  }
  const v = value as { archive?: unknown; member?: unknown } | null;
  if (typeof v !== "object" || v === null || typeof v.archive !== "string" || typeof v.member !== "string") {
    throw badRequest("debuginfo.shape", 'debuginfo body must be {"archive": "…", "member": "…"}');
  }
  gw.metrics.uploads.inc({ kind: "debuginfo", outcome: "ignored" });
  rq.res.writeHead(204).end();
};
