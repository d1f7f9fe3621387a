// PathInfo → the narinfo text we serve, signed with the cache's key.
//
// - URL `nar/<NarHash nix32>.nar.zst`, Compression zstd: the NAR is served as its stored zstd
//   frames. No FileHash/FileSize: the frames another upload stored first decide those bytes, we
//   would have to read the whole NAR to know them, and no client checks them (§3.2).
// - Sigs: the uploader's are kept; ours is added. A stored Sig under our own key name is dropped
//   first: it may be stale (key rotated with the same name) and two Sig lines with one trusted
//   name, one of them bad, are a hard error in Nix 2.8 (§4.5.5).
// - Memoized per PathInfo CID (a CID is a stable identity for "this path, these bytes, these
//   sigs"), so a hot narinfo costs one KV get and no ed25519 signing.
import type { CID } from "multiformats/cid";
import { sha256Hash } from "../../shared/hash.ts";
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

  render(info: PathInfo, cid: CID): string {
    const key = cid.toString();
    const memo = this.#memo.get(key);
    if (memo !== undefined) return memo;
    const text = formatNarInfo(this.narInfo(info));
    if (this.#memo.size >= this.#maxEntries) this.#memo.delete(this.#memo.keys().next().value!);
    this.#memo.set(key, text);
    return text;
  }

  narInfo(info: PathInfo): NarInfo {
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
