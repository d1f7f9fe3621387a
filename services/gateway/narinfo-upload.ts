// PUT /<hash32>.narinfo: commits an upload. Parsed strictly (400 with the parser's message),
// checked against the URL and our store dir, then handed to the ingester with its NAR:
//   - the NAR its `URL:` names is staged (the client sent it: PUT nar/… before) →
//     `submitStaged` with the narinfo's Compression (never inferred from the extension, docs/nix-protocol.md §6.2).
//     Also when a NAR with this NarHash is stored already: the chunker then checks that this
//     file really is that NAR (its blocks dedup), which is what lets the file's name be recorded;
//   - else a NAR with this NarHash is stored (KV `nars`) → `submitManifest` with its root: no
//     bytes needed. This is `nix store sign` re-PUTting a narinfo with one more Sig (the indexer
//     merges sigs), uploads that Nix skipped after our HEAD said 200 (`compression=none`, or a
//     file name recorded in KV `files`), and a second path with the same contents;
//   - else 400: Nix always sends the NAR first, so this is a broken client.
// Then it waits (at most NIXCAS_PUT_WAIT_SECONDS) for the outcome: done → 204; failed → 400 with
// the pipeline's reason (hash mismatch, bad NAR…); still running → 200 and a log line: the upload
// is durable in the work queue and will become readable or be reported failed. Never 202 or
// 5xx (Nix < 2.34 retries those with an empty body and hangs, docs/nix-protocol.md §7.3).
//
// A staged file's name (`<FileHash>.nar.xz`, Nix's own naming) goes along with the upload: the
// indexer records it in KV `files` together with the path (uploaded-files.ts), so the uploader's
// own cached narinfo keeps working and its next upload of the same file is skipped — also when
// this PUT answered before the upload was done, and whatever happens to this gateway meanwhile.
import { formatHash } from "../../shared/hash.ts";
import { NARINFO_MAX_BYTES, parseNarInfo, type NarInfo } from "../../shared/narinfo.ts";
import { NAR_FILE_NAME, type UploadMetadata } from "../../shared/nats/work-items.ts";
import { encodeNixBase32 } from "../../shared/nixbase32.ts";
import { isValidHashPart, parseStorePath } from "../../shared/store-path.ts";
import { fitUploaderLabel } from "../../shared/path-info.ts";
import { uploaderLabel } from "./auth.ts";
import type { Handler } from "./context.ts";
import { badRequest, HttpError } from "./http-errors.ts";
import { collect, decodedBody } from "./request-body.ts";
import { findStaged, narNameFromUrl } from "./staged-nars.ts";

/** Nix gives up on a response after 300 s without a byte (curl low-speed limit): stay well inside. */
const ANSWER_WITHIN_MS = 280_000;

export const putNarInfo: Handler = async (gw, rq) => {
  const started = Date.now();
  const hashPart = rq.params[0]!;
  if (!isValidHashPart(hashPart)) throw badRequest("narinfo.name", `${JSON.stringify(hashPart)} is not a store path hash part (32 nix32 characters)`);
  const principal = await gw.authorize(rq.req, "push");
  const body = await collect(decodedBody(rq.req, { limit: NARINFO_MAX_BYTES, what: "narinfo", onBytes: (n) => gw.metrics.bytesReceived.inc({ route: rq.route }, n) }));
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(body);
  } catch {
    throw badRequest("narinfo.utf8", "narinfo is not valid UTF-8");
  }
  const storeDir = gw.config.storeDir;
  const info = parseNarInfo(text, { storeDir }); // FormatError → 400 with the parser's message
  const sp = parseStorePath(info.storePath, storeDir);
  if (sp.hashPart !== hashPart) {
    throw badRequest("narinfo.hash-part", `narinfo PUT to ${hashPart}.narinfo describes ${info.storePath} (hash part ${sp.hashPart})`);
  }
  const meta = uploadMetadata(info, gw.secretKey.name, uploaderLabel(principal));
  const log = rq.log.child({ storePath: info.storePath });

  const narHash32 = encodeNixBase32(info.narHash.digest);
  const name = narNameFromUrl(info.url);
  const staged = name === null ? null : await findStaged(gw, name);
  let uploadId: string;
  let via: "manifest" | "staged";
  // Only a file the chunker reads can be recorded under its name (uploaded-files.ts).
  let fileName: string | null = null;
  if (staged !== null) {
    fileName = name !== null && NAR_FILE_NAME.test(name) ? name : null;
    ({ uploadId } = await gw.ingest.submitStaged(meta, { object: staged.object, compression: info.compression, fileName }));
    via = "staged";
  } else {
    const stored = await gw.catalog.manifestForNar(narHash32);
    if (stored === null) {
      throw badRequest(
        "narinfo.nar-missing",
        `narinfo for ${info.storePath}: its NAR ${info.url} has not been uploaded (PUT it first) and no NAR with NarHash sha256:${narHash32} is stored`,
      );
    }
    ({ uploadId } = await gw.ingest.submitManifest(meta, stored));
    via = "manifest";
  }
  const waitMs = Math.max(0, Math.min(gw.config.putWaitSeconds * 1000, ANSWER_WITHIN_MS - (Date.now() - started)));
  const status = await gw.ingest.waitFor(uploadId, waitMs);
  switch (status.state) {
    case "done":
      log.info("upload done", { uploadId, via, ms: Date.now() - started, ...(fileName !== null ? { fileName } : {}) });
      gw.metrics.uploads.inc({ kind: "narinfo", outcome: "done" });
      rq.res.writeHead(204).end();
      return;
    case "failed":
      log.warn("upload failed", { uploadId, via, reason: status.reason });
      gw.metrics.uploads.inc({ kind: "narinfo", outcome: "failed" });
      if (status.reason?.startsWith("storage.full: ")) {
        // The pipeline ran out of space (its reason carries the code): the status of a full
        // store, see statusForUpload.
        throw new HttpError(413, "storage.full", `upload of ${info.storePath} failed: ${status.reason}`);
      }
      throw badRequest("narinfo.upload-failed", `upload of ${info.storePath} failed: ${status.reason ?? "no reason given"}`);
    default:
      // Durable in the work queue: it will become readable or be reported failed.
      log.warn("upload still in progress when the PUT answered", { uploadId, via, state: status.state, waitedMs: waitMs });
      gw.metrics.uploads.inc({ kind: "narinfo", outcome: "pending" });
      rq.res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8", "Content-Length": "0" }).end();
  }
};

/**
 * What the ingester needs from a narinfo, and who sent it (the token's label, recorded in the
 * PathInfo). Sigs under our own key name are dropped: the gateway
 * signs every narinfo it serves itself, and a client's copy of our signature (`nix store sign`
 * re-PUTs what it read) is either that same signature or a forgery.
 */
export function uploadMetadata(info: NarInfo, ownKeyName: string, uploader: string): UploadMetadata {
  return {
    storePath: info.storePath,
    narHash: formatHash(info.narHash, "nix32"),
    narSize: info.narSize,
    references: info.references,
    deriver: info.deriver ?? null,
    ca: info.ca ?? null,
    sigs: info.sigs.filter((s) => s.slice(0, s.indexOf(":")) !== ownKeyName),
    uploader: fitUploaderLabel(uploader),
  };
}
