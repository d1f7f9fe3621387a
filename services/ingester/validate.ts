// Semantic validation of an upload's metadata, before anything is enqueued: everything a client
// can get wrong is found here and answered with a precise error, so the pipeline behind only
// ever sees well-formed metadata and fails only on the bytes themselves (hash, size, NAR
// structure). The result is normalised (narHash as sha256:<nix32>, references and signatures
// sorted and unique, CA canonical), so one upload has one spelling and one PathInfo CID.
import { FormatError, IntegrityError } from "../../shared/errors.ts";
import { formatHash, parseHash, type Hash } from "../../shared/hash.ts";
import { NARINFO_MAX_REFERENCES, NARINFO_MAX_SIGS } from "../../shared/narinfo.ts";
import { parseSignature, pathFingerprint, verifyFingerprint, type PublicKey } from "../../shared/signing.ts";
import {
  compareBytes,
  formatContentAddress,
  parseContentAddress,
  parseStorePath,
  parseStorePathBaseName,
} from "../../shared/store-path.ts";
import { NixcasError } from "../../shared/errors.ts";
import type { UploadMetadata } from "../../shared/nats/work-items.ts";

export interface ValidationRules {
  /** The cache's store dir (NIXCAS_STORE_DIR). */
  storeDir: string;
  /** Largest uncompressed NAR accepted (NIXCAS_MAX_NAR_SIZE). */
  maxNarSize: number;
  /** Keys whose signatures must verify when present (NIXCAS_TRUSTED_UPLOADER_KEYS). */
  trustedUploaderKeys: readonly PublicKey[];
}

export interface ValidatedMetadata {
  meta: UploadMetadata;
  narHash: Hash;
  hashPart: string;
}

/** Re-labels a parser's error with the field it came from, keeping its code and class. */
function inField<T>(field: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof NixcasError) {
      const Ctor = err instanceof IntegrityError ? IntegrityError : FormatError;
      throw new Ctor(err.code, `meta.${field}: ${err.message}`, { cause: err });
    }
    throw err;
  }
}

/** Checks and normalises the metadata of an upload (shape already checked by the protocol). */
export function validateUploadMetadata(raw: UploadMetadata, rules: ValidationRules): ValidatedMetadata {
  const sp = inField("storePath", () => parseStorePath(raw.storePath, rules.storeDir));
  const narHash = inField("narHash", () => parseHash(raw.narHash, "sha256"));

  if (raw.narSize > rules.maxNarSize) {
    throw new FormatError("ingest.too-large", `meta.narSize: the NAR of ${raw.storePath} is ${raw.narSize} bytes, larger than this cache accepts (${rules.maxNarSize})`);
  }

  if (raw.references.length > NARINFO_MAX_REFERENCES) {
    throw new FormatError("ingest.limits", `meta.references: ${raw.references.length} references, at most ${NARINFO_MAX_REFERENCES} are accepted`);
  }
  const references = [...new Set(raw.references)].sort(compareBytes);
  for (const ref of references) {
    try {
      parseStorePathBaseName(ref, rules.storeDir);
    } catch (err) {
      throw new FormatError("ingest.references", `meta.references: ${(err as Error).message}`, { cause: err });
    }
  }

  let deriver: string | null = raw.deriver;
  if (deriver === "unknown-deriver" || deriver === "") deriver = null;
  if (deriver !== null) {
    const d = deriver;
    let name: string;
    try {
      name = parseStorePathBaseName(d, rules.storeDir).name;
    } catch (err) {
      throw new FormatError("ingest.deriver", `meta.deriver: ${(err as Error).message}`, { cause: err });
    }
    if (!name.endsWith(".drv")) throw new FormatError("ingest.deriver", `meta.deriver: ${JSON.stringify(d)} is not a .drv base name`);
  }

  const ca = raw.ca === null || raw.ca === "" ? null : inField("ca", () => formatContentAddress(parseContentAddress(raw.ca!)));

  if (raw.sigs.length > NARINFO_MAX_SIGS) {
    throw new FormatError("ingest.limits", `meta.sigs: ${raw.sigs.length} signatures, at most ${NARINFO_MAX_SIGS} are accepted`);
  }
  const sigs = [...new Set(raw.sigs)].sort(compareBytes);
  const meta: UploadMetadata = {
    storePath: raw.storePath,
    narHash: formatHash(narHash, "nix32"),
    narSize: raw.narSize,
    references,
    deriver,
    ca,
    sigs,
    // The label's rules are the protocol's (checkUploadMetadataShape); null means nobody said.
    ...(raw.uploader != null ? { uploader: raw.uploader } : {}),
  };
  checkSignatures(meta, narHash, rules);
  return { meta, narHash, hashPart: sp.hashPart };
}

/**
 * Every Sig must be well-formed (`<name>:<base64 of 64 bytes>`): newer Nix calls a narinfo with
 * a malformed one corrupt. One by a trusted uploader key must verify: such a key vouches for the
 * upload, and a bad signature by it means the metadata was altered (or the client is broken).
 * Signatures by other keys are kept unchecked, as Nix ignores keys it does not trust.
 */
function checkSignatures(meta: UploadMetadata, narHash: Hash, rules: ValidationRules): void {
  if (meta.sigs.length === 0) return;
  for (const sig of meta.sigs) inField("sigs", () => parseSignature(sig));
  if (rules.trustedUploaderKeys.length === 0) return;
  const fingerprint = pathFingerprint(
    { storePath: meta.storePath, narHash, narSize: meta.narSize, references: meta.references },
    rules.storeDir,
  );
  for (const sig of meta.sigs) {
    if (verifyFingerprint(fingerprint, sig, rules.trustedUploaderKeys) === "invalid") {
      const keyName = sig.slice(0, sig.indexOf(":"));
      throw new IntegrityError(
        "ingest.signature-invalid",
        `meta.sigs: the signature by trusted uploader key '${keyName}' does not verify for ${meta.storePath} (fingerprint ${JSON.stringify(fingerprint)}): the metadata differs from what was signed`,
      );
    }
  }
}
