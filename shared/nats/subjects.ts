// Every subject and KV-key spelling in one place, so services and clients cannot drift apart.
import type { CID } from "multiformats/cid";
import { hasSha256Multihash } from "../cid.ts";
import { FormatError } from "../errors.ts";

/** Subjects that only ever capture blocks: the BLOCKS stream listens on this. */
export const BLOCK_SUBJECT_FILTER = "CID.sha256.>";

/**
 * `CID.sha256.<first 2 hex>.<64 hex>`. The two-digit partition lets blocks be split over several
 * streams later without renaming anything. The codec is not in the subject (it is a header): the
 * same bytes stored as raw and as dag-cbor are the same block.
 */
export function blockSubject(cid: CID): string {
  if (!hasSha256Multihash(cid)) {
    throw new FormatError("block.cid-hash", `CID ${cid.toString()} does not use sha2-256; blocks are addressed by sha256 only`);
  }
  const hex = Buffer.from(cid.multihash.digest).toString("hex");
  return `CID.sha256.${hex.slice(0, 2)}.${hex}`;
}

const BLOCK_SUBJECT_RE = /^CID\.sha256\.([0-9a-f]{2})\.([0-9a-f]{64})$/;

/** The 32-byte sha256 digest a block subject names; FormatError for anything else. */
export function cidDigestFromBlockSubject(subject: string): Uint8Array {
  const m = BLOCK_SUBJECT_RE.exec(subject);
  if (!m || !m[2]!.startsWith(m[1]!)) {
    throw new FormatError("block.subject", `${JSON.stringify(subject)} is not a block subject (CID.sha256.<pp>.<64 hex>)`);
  }
  return new Uint8Array(Buffer.from(m[2]!, "hex"));
}

/** The subject of a KV key (`>` for the whole bucket), as the KV layer of JetStream names it. */
export function kvKeySubject(bucket: string, key: string): string {
  return `$KV.${bucket}.${key}`;
}

export type WorkStream = "INGEST" | "INDEX";

/**
 * NARs of at least this many bytes (declared NarSize, uncompressed) are chunked in the large
 * lane of INGEST, smaller ones in the small lane. Each lane has its own consumer and its own
 * chunker slots, so a queue of multi-GiB NARs never holds back an upload of a few MiB. At
 * 64 MiB a small item takes seconds to chunk; most store paths are far below it.
 */
export const LARGE_NAR_BYTES = 64 * 1024 * 1024;

export type IngestLane = "small" | "large";

/**
 * The lanes of INGEST: the subject the ingester publishes an item on, and the durable consumer
 * the chunker works it with (filtered on that subject; on a work-queue stream the filters of
 * the consumers must not overlap).
 */
export const INGEST_LANES: Readonly<Record<IngestLane, { subject: string; consumer: string }>> = {
  small: { subject: "nixcas.work.ingest.small", consumer: "chunker-small" },
  large: { subject: "nixcas.work.ingest.large", consumer: "chunker-large" },
};

/**
 * INGEST before the lanes: one subject, worked by one unfiltered consumer. ensureTopology moves
 * items still queued there to their lane, then drops both (docs/architecture.md, "Work queues").
 */
export const LEGACY_INGEST = { subject: "nixcas.work.ingest", consumer: "chunker" } as const;

export function ingestLaneOf(narSize: number): IngestLane {
  return narSize >= LARGE_NAR_BYTES ? "large" : "small";
}

export const SUBJECTS = {
  /** What INGEST captures: every lane (INGEST_LANES). */
  ingestWorkFilter: "nixcas.work.ingest.>",
  indexWork: "nixcas.work.index",
  /** Requests: a NAR inline or staged. */
  ingestNar: "nixcas.ingest.nar",
  /** Requests: a pre-chunked NAR (manifest root). */
  ingestManifest: "nixcas.ingest.manifest",
  /** Requests: one block of a pre-chunked NAR, stored by the ingester after it verified it (pushers never publish to BLOCKS). */
  ingestBlock: "nixcas.ingest.block",
  /** Requests: an upload's status, waiting (long poll) for it to finish. */
  ingestStatus: "nixcas.ingest.status",
  /** Prefix of the indexer's queries: `.has-paths`, `.missing-chunks`, `.lookup`. */
  indexQuery: "nixcas.index",
  /** Each chunker replica's counters (a `$SRV` endpoint, queue group: any replica answers). */
  chunkerStats: "nixcas.chunker.stats",
  /** Each gateway replica's counters. */
  gatewayStats: "nixcas.gateway.stats",
  deadLetterFilter: "nixcas.deadletter.>",
  deadLetter: (stream: string): string => `nixcas.deadletter.${stream}`,
  eventsFilter: "nixcas.events.>",
  pathAdded: (hashPart: string): string => `nixcas.events.path.added.${subjectToken(hashPart)}`,
  /** Every path-added event (the tierer counts a push as an access). */
  pathAddedFilter: "nixcas.events.path.added.*",
  pathFailed: (hashPart: string): string => `nixcas.events.path.failed.${subjectToken(hashPart)}`,
  /** An admin removed the path (`PathDeletedEvent`, shared/nats/index-protocol.ts). */
  pathDeleted: (hashPart: string): string => `nixcas.events.path.deleted.${subjectToken(hashPart)}`,
  /** A stored block failed verification (`BlockCorruptEvent`, shared/nats/block-store.ts); the token is its sha256 in hex, as in its block subject. */
  blockCorrupt: (cid: CID): string => `nixcas.events.block.corrupt.${blockSubject(cid).slice("CID.sha256.xx.".length)}`,
  blockCorruptFilter: "nixcas.events.block.corrupt.>",
  /** The server's advisory when a consumer gives up on a message (captured by ADVISORIES). */
  maxDeliveriesAdvisoryFilter: "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>",
} as const;

/** A token spliced into a subject must not add levels or wildcards. */
function subjectToken(token: string): string {
  if (!/^[-_=a-zA-Z0-9]+$/.test(token)) {
    throw new FormatError("subject.token", `${JSON.stringify(token)} cannot be used as a subject token`);
  }
  return token;
}

const KEY_SAFE = /[-_.a-zA-Z0-9]/;

/**
 * KV keys must match `[-/_=.a-zA-Z0-9]+` and are subject tokens (no empty `.`-separated part).
 * Every byte of the UTF-8 text outside `[-_.a-zA-Z0-9]` becomes `=` + two lowercase hex digits;
 * a `.` that would start, end or double a token is escaped too. Names that are already safe
 * (nix32 hashes, CIDs, most drv names) stay as they are.
 */
export function escapeKey(text: string): string {
  if (text.length === 0) throw new FormatError("kv.key-empty", "a KV key cannot be empty");
  const bytes = Buffer.from(text, "utf8");
  let out = "";
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    const ch = String.fromCharCode(b);
    const isDot = b === 0x2e;
    const unsafeDot = isDot && (i === 0 || i === bytes.length - 1 || bytes[i - 1] === 0x2e);
    if (b < 0x80 && KEY_SAFE.test(ch) && !unsafeDot) out += ch;
    else out += "=" + b.toString(16).padStart(2, "0");
  }
  return out;
}

/** Inverse of `escapeKey`; FormatError on a malformed escape or invalid UTF-8. */
export function unescapeKey(key: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < key.length; i++) {
    const ch = key[i]!;
    if (ch === "=") {
      const hex = key.slice(i + 1, i + 3);
      if (!/^[0-9a-f]{2}$/.test(hex)) throw new FormatError("kv.key-escape", `bad escape at offset ${i} in KV key ${JSON.stringify(key)}`);
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (/^[-/_.a-zA-Z0-9]$/.test(ch)) {
      bytes.push(ch.charCodeAt(0));
    } else {
      throw new FormatError("kv.key-char", `character ${JSON.stringify(ch)} at offset ${i} cannot appear in KV key ${JSON.stringify(key)}`);
    }
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(bytes));
  } catch {
    throw new FormatError("kv.key-utf8", `KV key ${JSON.stringify(key)} does not decode to UTF-8 text`);
  }
}
