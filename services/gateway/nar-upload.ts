// PUT /nar/<name>: a whole (usually compressed) NAR from a client that does not chunk — plain
// `nix copy --to http://…`. The body streams into the `staging` object store (never buffered),
// under a fresh object name per upload so concurrent uploads of one name cannot mix. Nothing is
// chunked yet: the NAR becomes a store path only when its narinfo arrives (narinfo-upload.ts).
//
// Checks: the size limit (Content-Length up front, then counted); the name must be
// `<52 nix32>.nar[.ext]` — Nix names uploads after the sha256 of the file (FileHash) — and the
// body must hash to it, else it was cut or damaged on the way (400). Only then is the staged record
// written: a client that disconnects mid-body leaves no record and no object (the object store
// purges the chunks of a put that fails).
import { explainMissingStream } from "../../shared/nats/topology.ts";
import { kvKeySubject } from "../../shared/nats/subjects.ts";
import { retryThroughLeaderChange } from "../../shared/nats/failover.ts";
import { newStagingObjectName } from "../../shared/nats/staging-store.ts";
import { NAR_FILE_NAME } from "../../shared/nats/work-items.ts";
import { encodeNixBase32 } from "../../shared/nixbase32.ts";
import type { Gateway, GatewayRequest, Handler } from "./context.ts";
import { badRequest, HttpError } from "./http-errors.ts";
import { rawBody } from "./request-body.ts";
import { checkNarName, stagedKey } from "./staged-nars.ts";

export const putNar: Handler = async (gw, rq) => {
  const name = rq.params[0]!;
  checkNarName(name);
  await gw.authorize(rq.req, "push");
  if (rq.req.headers["content-encoding"] !== undefined) {
    // A NAR's compression is the narinfo's business; a transport coding on top would be hashed
    // as part of the file and never match FileHash.
    throw new HttpError(415, "nar.content-encoding", "NAR uploads must not carry a Content-Encoding (compress the file itself and say so in the narinfo)");
  }
  const expected = NAR_FILE_NAME.exec(name)?.[1];
  if (expected === undefined) {
    // Nix names every uploaded NAR after the sha256 of the file (its FileHash); any other name
    // would be stored unchecked, and a cut or damaged body could then not be told apart.
    throw badRequest("nar.name", `nar/${name}: a NAR upload must be named <sha256 of the file, 52 nix32 characters>.nar[.<compression extension>]`);
  }
  const object = newStagingObjectName();
  let size = 0;
  const body = rawBody(rq.req, {
    limit: gw.config.maxNarSize,
    what: `NAR upload nar/${name}`,
    onBytes: (n) => {
      size += n;
      gw.metrics.bytesReceived.inc({ route: rq.route }, n);
    },
  });
  const staged = await gw.staging.put(object, body, { description: `nar/${name}` });
  const actual = staged.sha256 === null ? null : encodeNixBase32(staged.sha256);
  if (actual !== expected) {
    await deleteQuietly(gw, rq, object);
    throw badRequest(
      "nar.hash-mismatch",
      `NAR upload nar/${name}: the ${size} bytes received hash to sha256:${actual ?? "?"}, but the name says ${expected} (truncated or corrupt upload)`,
    );
  }
  // The bytes are stored: the record (an idempotent KV put) waits out a NATS leader change.
  const record = { object, size, sha256: expected, createdAt: new Date().toISOString() };
  await retryThroughLeaderChange(() => gw.catalog.putStaged(stagedKey(name), record), {
    explain: (err) => explainMissingStream(gw.topology.jsm, kvKeySubject("staged", stagedKey(name)), err),
  });
  rq.log.info("NAR staged", { name, object, size });
  gw.metrics.uploads.inc({ kind: "nar", outcome: "staged" });
  rq.res.writeHead(204).end();
};

async function deleteQuietly(gw: Gateway, rq: GatewayRequest, object: string): Promise<void> {
  try {
    await gw.staging.delete(object);
  } catch (err) {
    // The bucket's max_age removes it anyway.
    rq.log.warn("could not delete a rejected staged NAR", { object, error: err });
  }
}
