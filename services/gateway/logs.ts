// GET|HEAD|PUT /log/<drv base name>: build logs (`nix store copy-log --to`, `nix log`). Stored as
// blobs (chunked, so repeated log text dedups), streamed in and out without buffering. The name
// is any store path base name: `nix log` asks for the deriver of a path, and a log may be filed
// under an output too. A log is kept once stored: an upload of another log under the same name
// is refused (409) unless its token has admin scope (then it replaces it, e.g. a rebuild's log),
// so a push token cannot rewrite the build history others read. The same log again is fine.
import { putBlob } from "../../shared/nats/blob-store.ts";
import { parseStorePathBaseName } from "../../shared/store-path.ts";
import { serveBlob } from "./blob-routes.ts";
import type { Handler } from "./context.ts";
import { badRequest, HttpError, notFound } from "./http-errors.ts";
import { decodedBody } from "./request-body.ts";

/** Largest build log accepted (after decoding); bigger logs are nobody's reading material. */
export const LOG_MAX_BYTES = 256 * 1024 * 1024;

function validName(name: string): boolean {
  try {
    parseStorePathBaseName(name);
    return true;
  } catch {
    return false;
  }
}

export const serveLog: Handler = async (gw, rq) => {
  await gw.authorize(rq.req, "pull");
  const name = rq.params[0]!;
  if (!validName(name)) throw notFound(`log/${name}`);
  const root = await gw.catalog.getLog(name);
  if (root === null) throw notFound(`log/${name}`);
  await serveBlob(gw, rq, root, "text/plain; charset=utf-8");
};

export const putLog: Handler = async (gw, rq) => {
  const name = rq.params[0]!;
  try {
    parseStorePathBaseName(name);
  } catch (err) {
    throw badRequest("log.name", `log/${name}: ${(err as Error).message}`);
  }
  const principal = await gw.authorize(rq.req, "push");
  const body = decodedBody(rq.req, { limit: LOG_MAX_BYTES, what: "build log", onBytes: (n) => gw.metrics.bytesReceived.inc({ route: rq.route }, n) });
  const { root, size } = await putBlob(gw.blocks, body);
  if (principal.scopes.has("admin")) {
    await gw.catalog.putLog(name, root);
  } else if (!(await gw.catalog.createLog(name, root))) {
    // Blobs are content-addressed: the same log has the same root.
    const stored = await gw.catalog.getLog(name);
    if (stored === null || !stored.equals(root)) {
      throw new HttpError(409, "log.exists", `log/${name} is already stored; replacing a build log needs a token with admin scope`);
    }
    gw.metrics.uploads.inc({ kind: "log", outcome: "kept-existing" });
    rq.res.writeHead(204).end();
    return;
  }
  rq.log.info("build log stored", { name, size, root: root.toString() });
  gw.metrics.uploads.inc({ kind: "log", outcome: "stored" });
  rq.res.writeHead(204).end();
};
