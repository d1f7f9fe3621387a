// GET|HEAD /nar/<name>: a committed NAR.
//
// `<NarHash nix32>.nar.zst` and `.nar` (the URLs our narinfos name), found by the NAR hash in
// KV `nars`, served from its manifest. `.nar.zst` is the stored zstd frames concatenated (no
// recompression), with Content-Length = the FileSize the indexer recorded; `.nar` is the
// decompressed NAR with Content-Length = NarSize and working single-range requests (206), which
// is what lets curl resume a cut download (docs/nix-protocol.md §8.4). `.nar.zst` does not advertise
// ranges.
//
// Any other name a client uploaded and committed (KV `files`, e.g. `<FileHash>.nar.xz`): the
// uploader's Nix keeps the narinfo it sent, naming that file, for 30 days, and substitutes from
// it; the NAR is served in the compression that narinfo says (uploaded-files.ts).
//
// HEAD answers exactly as GET would: 200 only for a NAR that is committed and whose manifest root
// is readable. Not for a staged, uncommitted upload: Nix HEADs `nar/<FileHash>.nar.xz` before
// uploading and skips the upload on 200, so a 200 for a NAR that a failed upload left staged
// would make its retry commit (or fail on) that same object instead of sending the file again.
import type { Handler } from "./context.ts";
import { notFound } from "./http-errors.ts";
import { serveNarFromManifest } from "./nar-serve.ts";
import { isNarName } from "./staged-nars.ts";
import { serveUploadedFile } from "./uploaded-files.ts";

const SERVED_NAR = /^([0-9a-df-np-sv-z]{52})\.nar(\.zst)?$/;

export const serveNar: Handler = async (gw, rq) => {
  await gw.authorize(rq.req, "pull");
  const name = rq.params[0]!;
  const m = SERVED_NAR.exec(name);
  const nar = m ? await gw.catalog.getNar(m[1]!) : null;
  if (nar !== null) {
    const kind = m![2] === undefined ? "nar" : "zst";
    await serveNarFromManifest(gw, rq, nar.manifest, m![1]!, kind, { zstFileSize: nar.zstFileSize });
    return;
  }
  if (isNarName(name)) {
    const file = await gw.catalog.getUploadedFile(name);
    if (file !== null && (await serveUploadedFile(gw, rq, name, file))) return;
  }
  throw notFound(`nar/${name}`);
};
