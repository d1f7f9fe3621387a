// PathInfo → the narinfo text we serve, signed with the cache's key.
//
// - URL `nar/<NarHash nix32>.nar.zst`, Compression zstd: the NAR is served as its stored zstd
//   frames. FileHash/FileSize are those frames' sha256 and length, which the indexer computed
//   once (blocks are never overwritten, so the bytes at that URL never change) and recorded in
//   KV `nars`. Nix 2.8 asserts a FileHash when it re-serialises a narinfo (`nix store sign
//   --store http://…` re-PUTs it). A NAR recorded before that (a bare-CID record) gets none.
// - Sigs: the uploader's are kept; ours is added. A stored Sig under our own key name is dropped
//   first: it may be stale (key rotated with the same name) and two Sig lines with one trusted
//   name, one of them bad, are a hard error in Nix 2.8 (docs/nix-protocol.md §4.5.5).
// - Memoized per PathInfo CID (a CID is a stable identity for "this path, these bytes, these
//   sigs") and the file hash, so a hot narinfo costs two KV gets and no ed25519 signing.
import type { CID } from "multiformats/cid";
import { formatDigest, sha256Hash } from "../../shared/hash.ts";
import type { NarRecord } from "../../shared/nats/catalog.ts";
import { encodeNixBase32 } from "../../shared/nixbase32.ts";
import { formatNarInfo, type NarInfo } from "../../shared/narinfo.ts";
import type { PathInfo } from "../../shared/path-info.ts";
import { pathFingerprint, signFingerprint, type SecretKey } from "../../shared/signing.ts";

/** The URL under which a NAR with this hash is served as zstd frames. */
export function narUrl(narHash: Uint8Array): string {
  return `nar/${encodeNixBase32(narHash)}.nar.zst`;
}

export class NarInfoRenderer {
  readonly #key: SecretKey;
  readonly #storeDir: string;
  readonly #memo = new Map<string, string>();
  readonly #maxEntries: number;

  constructor(key: SecretKey, storeDir: string, maxEntries = 10_000) {
    this.#key = key;
    this.#storeDir = storeDir;
    this.#maxEntries = maxEntries;
  }

  /** `nar`: the NAR's record in KV `nars` (for FileHash/FileSize), null when there is none. */
  render(info: PathInfo, cid: CID, nar: NarRecord | null): string {
    const file = nar?.zstFileHash ? `${formatDigest(sha256Hash(nar.zstFileHash), "nix32")}:${nar.zstFileSize}` : "-";
    const key = `${cid.toString()}|${file}`;
    const memo = this.#memo.get(key);
    if (memo !== undefined) return memo;
    const text = formatNarInfo(this.narInfo(info, nar));
    if (this.#memo.size >= this.#maxEntries) this.#memo.delete(this.#memo.keys().next().value!);
    this.#memo.set(key, text);
    return text;
  }

  narInfo(info: PathInfo, nar: NarRecord | null = null): NarInfo {
    const narHash = sha256Hash(info.narHash);
    const fingerprint = pathFingerprint(
      { storePath: info.storePath, narHash, narSize: info.narSize, references: info.references },
      this.#storeDir,
    );
    const ours = signFingerprint(this.#key, fingerprint);
    const sigs = info.sigs.filter((s) => s.slice(0, s.indexOf(":")) !== this.#key.name);
    sigs.push(ours);
    const narinfo: NarInfo = {
      storePath: info.storePath,
      url: narUrl(info.narHash),
      compression: "zstd",
      ...(nar?.zstFileHash && nar.zstFileSize !== null ? { fileHash: sha256Hash(nar.zstFileHash), fileSize: nar.zstFileSize } : {}),
      narHash,
      narSize: info.narSize,
      references: info.references,
      sigs,
      extra: [],
    };
    if (info.deriver !== null) narinfo.deriver = info.deriver;
    if (info.ca !== null) narinfo.ca = info.ca;
    return narinfo;
  }
}
