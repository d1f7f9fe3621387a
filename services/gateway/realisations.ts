// Realisations of content-addressed derivation outputs (docs/nix-protocol.md §9), stored and served
// verbatim at both path schemes:
//   /realisations/sha256:<64 hex>!<output>.doi        Nix 2.4 … 2.34, Lix ≤ 2.93
//   /build-trace-v2/<drv base name>/<output>.doi      Nix ≥ 2.35
// The JSON is checked for the fields a client relies on (the id matches the URL, outPath is a
// store path base name, signatures a list), not re-encoded: its signatures cover its bytes'
// meaning, and clients of each scheme expect their own shape. A realisation maps an output to
// one path for good: an upload naming another outPath than the stored one is refused (409).
// One with the same outPath replaces it (e.g. with more signatures) only with an admin token;
// with a push token the stored one is kept (204: the mapping the client wanted is there, and
// `nix copy` re-sends the realisations of outputs another builder uploaded first).
import { parseStorePathBaseName } from "../../shared/store-path.ts";
import type { GatewayRequest, Handler } from "./context.ts";
import { badRequest, HttpError, notFound } from "./http-errors.ts";
import { collect, decodedBody } from "./request-body.ts";

/** A realisation is a few hundred bytes; dependentRealisations can list a few hundred more. */
export const REALISATION_MAX_BYTES = 512 * 1024;

const DRV_OUTPUT_ID = /^sha256:[0-9a-f]{64}![A-Za-z0-9+\-._?=]{1,211}$/;
const OUTPUT_NAME = /^[A-Za-z0-9+\-._?=]{1,211}$/;

type Scheme = "doi" | "build-trace-v2";

export interface Target {
  scheme: Scheme;
  /** Key in KV `realisations` (escaped by the catalog). */
  key: string;
  /** As in the URL, for messages. */
  url: string;
  /** For `doi`: the DrvOutput id the body must carry. */
  id?: string;
}

function target(rq: GatewayRequest): Target | null {
  if (rq.route === "realisation") {
    const id = rq.params[0]!;
    if (!DRV_OUTPUT_ID.test(id)) return null;
    return { scheme: "doi", key: id, url: `realisations/${id}.doi`, id };
  }
  const [drv, output] = [rq.params[0]!, rq.params[1]!];
  if (!OUTPUT_NAME.test(output)) return null;
  try {
    if (!parseStorePathBaseName(drv).name.endsWith(".drv")) return null;
  } catch {
    return null;
  }
  return { scheme: "build-trace-v2", key: `build-trace-v2/${drv}/${output}`, url: `build-trace-v2/${drv}/${output}.doi` };
}

export const serveRealisation: Handler = async (gw, rq) => {
  await gw.authorize(rq.req, "pull");
  const t = target(rq);
  if (t === null) throw notFound(rq.path.slice(1));
  const json = await gw.catalog.getRealisation(t.key);
  if (json === null) throw notFound(t.url);
  rq.res.writeHead(200, { "Content-Type": "application/json", "Content-Length": String(json.length) });
  if (rq.head) return void rq.res.end();
  rq.res.end(json);
  gw.metrics.bytesServed.inc({ route: rq.route }, json.length);
};

export const putRealisation: Handler = async (gw, rq) => {
  const t = target(rq);
  if (t === null) throw badRequest("realisation.name", `${rq.path.slice(1)} is not a realisation path (realisations/sha256:<hex>!<out>.doi or build-trace-v2/<drv>/<out>.doi)`);
  const principal = await gw.authorize(rq.req, "push");
  const body = await collect(decodedBody(rq.req, { limit: REALISATION_MAX_BYTES, what: "realisation", onBytes: (n) => gw.metrics.bytesReceived.inc({ route: rq.route }, n) }));
  const outPath = checkRealisation(t, body);
  const refuseOtherPath = (existing: Uint8Array | null) => {
    const stored = existing === null ? null : storedOutPath(existing);
    if (stored !== null && stored !== outPath) {
      throw new HttpError(409, "realisation.conflict", `${t.url} already maps to ${stored}; refusing to re-point it to ${outPath}`);
    }
  };
  refuseOtherPath(await gw.catalog.getRealisation(t.key));
  if (principal.scopes.has("admin")) {
    await gw.catalog.putRealisation(t.key, body);
  } else if (!(await gw.catalog.createRealisation(t.key, body))) {
    refuseOtherPath(await gw.catalog.getRealisation(t.key));
    gw.metrics.uploads.inc({ kind: "realisation", outcome: "kept-existing" });
    rq.res.writeHead(204).end();
    return;
  }
  gw.metrics.uploads.inc({ kind: "realisation", outcome: "stored" });
  rq.res.writeHead(204).end();
};

/** Checks the body; returns its outPath. Throws HttpError 400 (realisation.json, realisation.shape). */
export function checkRealisation(t: Target, body: Uint8Array): string {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch (err) {
    throw badRequest("realisation.json", `${t.url}: body is not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw badRequest("realisation.shape", `${t.url}: body is not a JSON object`);
  const r = value as Record<string, unknown>;
  const fail = (message: string) => badRequest("realisation.shape", `${t.url}: ${message}`);
  if (typeof r.outPath !== "string") throw fail("outPath is missing or not a string");
  try {
    parseStorePathBaseName(r.outPath);
  } catch (err) {
    throw fail(`outPath: ${(err as Error).message}`);
  }
  if (r.signatures !== undefined) {
    if (!Array.isArray(r.signatures)) throw fail("signatures is not a list");
    for (const s of r.signatures) {
      const ok =
        typeof s === "string" ||
        (t.scheme === "build-trace-v2" && typeof s === "object" && s !== null && typeof (s as { keyName?: unknown }).keyName === "string" && typeof (s as { sig?: unknown }).sig === "string");
      if (!ok) throw fail(`signature ${JSON.stringify(s).slice(0, 100)} is not valid`);
    }
  }
  if (t.scheme === "doi") {
    if (r.id !== t.id) throw fail(`id ${JSON.stringify(r.id)} does not match the URL's ${t.id}`);
    if (r.dependentRealisations !== undefined) {
      const deps = r.dependentRealisations;
      if (typeof deps !== "object" || deps === null || Array.isArray(deps)) throw fail("dependentRealisations is not an object");
      for (const [id, path] of Object.entries(deps)) {
        if (!DRV_OUTPUT_ID.test(id) || typeof path !== "string") throw fail(`dependentRealisations entry ${JSON.stringify(id)} is not valid`);
        try {
          parseStorePathBaseName(path);
        } catch (err) {
          throw fail(`dependentRealisations ${id}: ${(err as Error).message}`);
        }
      }
    }
  }
  return r.outPath;
}

function storedOutPath(json: Uint8Array): string | null {
  try {
    const v = JSON.parse(new TextDecoder().decode(json)) as { outPath?: unknown };
    return typeof v.outPath === "string" ? v.outPath : null;
  } catch {
    return null;
  }
}

