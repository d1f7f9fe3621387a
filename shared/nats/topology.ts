// The JetStream topology (streams, KV buckets, object store) as code: `ensureTopology` creates
// what is missing, updates what can safely be updated (replicas, ages, windows), and refuses —
// with the setting, its value and what it must be — when an existing stream has settings that
// would break an invariant. It never "fixes" those itself: an operator decides.
//
// JetStream features relied on, with the oldest server that has them (2.9.10 runs here; why
// each matters: docs/nats-notes.md):
//   streams, KV, object store, Nats-Msg-Id dedup, expected-last-subject-sequence .. 2.6.3
//   consumer `backoff`, `nak(delay)` .............................................. 2.7.1
//   MAX_DELIVERIES advisories, `working()` (+WPI), double ack (`ackAck`) ........... 2.2
//   `allow_direct` + direct get by `last_by_subj` (BLOCKS reads, KV gets) ......... 2.9.0
//   `discard_new_per_subject` (the server refuses to overwrite a block) ........... 2.9.0
// Not used (or only behind a version check, see the callers): batched direct get (2.11),
// `term(reason)` (2.10.4), stream compression / metadata / several consumer filters (2.10),
// per-message TTL (2.11).
import { nanos, type NatsConnection } from "@nats-io/nats-core";
import {
  DiscardPolicy,
  JetStreamApiCodes,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
  type StreamConfig,
  type StreamInfo,
} from "@nats-io/jetstream";
import { Kvm, type KV, type KvOptions } from "@nats-io/kv";
import { Objm, setSha256Backend, type ObjectStore } from "@nats-io/obj";
import { causes, NixcasError } from "../errors.ts";
import { serverVersionAtLeast } from "./connect.ts";
import { isJetStreamApiError, MoreJetStreamApiCodes } from "./jetstream-codes.ts";
import { BLOCK_SUBJECT_FILTER, INGEST_LANES, ingestLaneOf, kvKeySubject, LEGACY_INGEST, SUBJECTS } from "./subjects.ts";
import { decodeIngestWorkItem } from "./work-items.ts";

/** The oldest server with every feature listed above. */
export const MIN_SERVER_VERSION = "2.9.0";

export const STREAMS = {
  blocks: "BLOCKS",
  ingest: "INGEST",
  index: "INDEX",
  deadLetter: "DEADLETTER",
  events: "EVENTS",
  advisories: "ADVISORIES",
} as const;

export const KV_BUCKETS = ["paths", "nars", "listings", "logs", "realisations", "uploads", "staged", "files", "tokens", "cold", "packs", "access", "pins", "tierer"] as const;
export type KvBucketName = (typeof KV_BUCKETS)[number];
export const STAGING_BUCKET = "staging";

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

/** The dedup window of BLOCKS: a retried publish inside it is answered `duplicate: true`. */
export const BLOCKS_DUPLICATE_WINDOW_MS = 2 * MINUTE;

export interface TopologyOptions {
  /** Replicas of every stream, bucket and object store (NIXCAS_REPLICAS). */
  replicas?: number;
  /** Largest stored block message (frame + headers); default: the server's max_payload. */
  maxBlockBytes?: number;
  /** Told about every resource: created, updated (with what changed) or unchanged. */
  onAction?: (action: TopologyAction) => void;
}

export interface TopologyAction {
  kind: "stream" | "kv" | "object-store";
  name: string;
  action: "created" | "updated" | "unchanged";
  changes?: string[];
}

export interface Topology {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  kv: Record<KvBucketName, KV>;
  /** Whole NARs uploaded by clients that do not chunk; native sha256 backend. */
  staging: ObjectStore;
}

/** One stream as we want it: `config` to create it, `check` for invariants of an existing one. */
interface StreamSpec {
  config: Partial<StreamConfig> & { name: string; subjects: string[] };
  /** Settings that may be changed on an existing stream to match `config`. */
  updatable: Array<keyof StreamConfig>;
  /** Returns the problems that make an existing stream unusable (empty when fine). */
  check?: (info: StreamInfo) => string[];
}

function streamSpecs(replicas: number, maxBlockBytes: number): StreamSpec[] {
  const common = { storage: StorageType.File, num_replicas: replicas } as const;
  return [
    {
      config: {
        ...common,
        name: STREAMS.blocks,
        description: "nixcas blocks: one zstd frame per CID, never overwritten",
        subjects: [BLOCK_SUBJECT_FILTER],
        retention: RetentionPolicy.Limits,
        max_msgs_per_subject: 1,
        discard: DiscardPolicy.New,
        discard_new_per_subject: true,
        allow_direct: true,
        duplicate_window: nanos(BLOCKS_DUPLICATE_WINDOW_MS),
        max_msg_size: maxBlockBytes,
      },
      updatable: ["num_replicas", "allow_direct", "duplicate_window", "max_msg_size", "description"],
      check: (info) => {
        const c = info.config;
        const problems: string[] = [];
        if (c.retention !== RetentionPolicy.Limits) problems.push(`retention is '${c.retention}', must be 'limits'`);
        if (c.discard !== DiscardPolicy.New) problems.push(`discard is '${c.discard}', must be 'new' (with 'old' the server silently drops the oldest blocks)`);
        if (c.discard_new_per_subject !== true) problems.push("discard_new_per_subject is off, must be on (the server must refuse to overwrite a block)");
        if (c.max_msgs_per_subject !== 1) problems.push(`max_msgs_per_subject is ${c.max_msgs_per_subject}, must be 1`);
        if (c.max_age && c.max_age > 0) problems.push(`max_age is ${c.max_age} ns, must be 0 (blocks never expire; GC deletes them)`);
        if (c.sealed) problems.push("the stream is sealed");
        return problems;
      },
    },
    workQueueSpec(STREAMS.ingest, SUBJECTS.ingestWorkFilter, "nixcas work items: NARs to chunk, one subject per lane", replicas),
    workQueueSpec(STREAMS.index, SUBJECTS.indexWork, "nixcas work items: chunked NARs to index", replicas),
    limitsSpec(STREAMS.deadLetter, SUBJECTS.deadLetterFilter, "nixcas work items that failed for good, with the reason", 30 * DAY, replicas),
    limitsSpec(STREAMS.events, SUBJECTS.eventsFilter, "nixcas events (path added/failed); kept a day so late waiters see outcomes", DAY, replicas),
    limitsSpec(STREAMS.advisories, SUBJECTS.maxDeliveriesAdvisoryFilter, "JetStream max-deliveries advisories", 7 * DAY, replicas),
  ];
}

function workQueueSpec(name: string, subject: string, description: string, replicas: number): StreamSpec {
  return {
    config: {
      name,
      description,
      subjects: [subject],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      num_replicas: replicas,
      // At a limit an operator set (max_msgs, max_bytes), `new` refuses the publish, so the
      // upload is refused with the cause; `old` would silently drop queued work items.
      discard: DiscardPolicy.New,
      duplicate_window: nanos(BLOCKS_DUPLICATE_WINDOW_MS),
    },
    updatable: ["num_replicas", "duplicate_window", "description", "discard"],
    check: (info) => {
      const problems: string[] = [];
      if (info.config.retention !== RetentionPolicy.Workqueue) problems.push(`retention is '${info.config.retention}', must be 'workqueue'`);
      if (info.config.max_age && info.config.max_age > 0) problems.push(`max_age is ${info.config.max_age} ns, must be 0 (work items must not expire unprocessed)`);
      if (info.config.sealed) problems.push("the stream is sealed");
      return problems;
    },
  };
}

function limitsSpec(name: string, subject: string, description: string, maxAgeMs: number, replicas: number): StreamSpec {
  return {
    config: {
      name,
      description,
      subjects: [subject],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      num_replicas: replicas,
      discard: DiscardPolicy.Old,
      max_age: nanos(maxAgeMs),
    },
    updatable: ["num_replicas", "max_age", "description"],
  };
}

interface BucketSpec {
  name: KvBucketName;
  description: string;
  ttlMs?: number;
}

const BUCKET_SPECS: BucketSpec[] = [
  { name: "paths", description: "store-path hash part -> PathInfo node (dag-cbor)" },
  { name: "nars", description: "NAR hash (nix32) -> NarRecord JSON (manifest root CID, .nar.zst sha256 and size)" },
  { name: "listings", description: "store-path hash part -> .ls blob manifest CID" },
  { name: "logs", description: "escaped drv base name -> log blob manifest CID" },
  { name: "realisations", description: "escaped realisation id -> .doi JSON" },
  { name: "uploads", description: "upload id -> UploadStatus JSON", ttlMs: 7 * DAY },
  { name: "staged", description: "nar.<FileHash> -> StagedNar JSON", ttlMs: DAY },
  // No TTL: the uploader's Nix keeps the narinfo naming the file for 30 days, and a name is
  // about 100 bytes per upload.
  { name: "files", description: "escaped uploaded NAR name (<FileHash>.nar.xz) -> UploadedFile JSON (NAR hash, compression)" },
  // Written only by admins (`nixcas token`, `nixcas up` on first start); read by the gateways.
  { name: "tokens", description: "HTTP token id -> TokenRecord JSON (sha256 of the secret, scopes, name, expiry)" },
  // Written only by the tierer (shared/nats/tier-protocol.ts has the record types).
  { name: "cold", description: "block sha256 hex -> ColdBlockRecord JSON (pack, offset, length): where a cold block is" },
  { name: "packs", description: "pack id -> PackRecord JSON (object key, bytes, blocks, storage class, state)" },
  { name: "access", description: "store-path hash part -> AccessRecord JSON (last read or push)" },
  { name: "pins", description: "store-path hash part -> PinRecord JSON (kept with its closure by GC)" },
  { name: "tierer", description: "leases of the tierer's passes (one tiering or GC pass at a time across replicas)" },
];
const STAGING_TTL_MS = DAY;

export class TopologyError extends NixcasError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

async function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | null> {
  try {
    return await jsm.streams.info(name);
  } catch (err) {
    if (isJetStreamApiError(err, JetStreamApiCodes.StreamNotFound)) return null;
    throw err;
  }
}

/** Creates or checks-and-updates one stream; returns what it did. */
async function ensureStream(jsm: JetStreamManager, spec: StreamSpec, kind: TopologyAction["kind"]): Promise<TopologyAction> {
  const { name } = spec.config;
  let info = await streamInfo(jsm, name);
  if (!info) {
    try {
      await jsm.streams.add(spec.config);
      return { kind, name, action: "created" };
    } catch (err) {
      // Another process created it between our info and add (services start together): the
      // server answers that the name is in use or, measured under load, that the subjects
      // overlap with an existing stream — the one just created. Either way, read it back.
      const raced = isJetStreamApiError(err, MoreJetStreamApiCodes.StreamNameExist, MoreJetStreamApiCodes.StreamSubjectOverlap);
      info = raced ? await streamInfo(jsm, name) : null;
      if (!info) throw new TopologyError("topology.create", `cannot create stream ${name}: ${(err as Error).message}`, { cause: err });
    }
  }
  const problems = spec.check?.(info) ?? [];
  if (problems.length > 0) {
    throw new TopologyError(
      "topology.drift",
      `existing stream ${name} has settings that break nixcas's invariants: ${problems.join("; ")}. ` +
        `Not changed automatically: fix it (nats stream edit ${name}) or recreate it, then run nixcas setup again`,
    );
  }
  const update: Partial<StreamConfig> = {};
  const changes: string[] = [];
  for (const key of spec.updatable) {
    const want = spec.config[key];
    const have = info.config[key];
    if (want !== undefined && want !== have) {
      (update as Record<string, unknown>)[key] = want;
      changes.push(`${key}: ${JSON.stringify(have)} -> ${JSON.stringify(want)}`);
    }
  }
  const missingSubjects = spec.config.subjects.filter((s) => !(info.config.subjects ?? []).includes(s));
  if (missingSubjects.length > 0) {
    update.subjects = [...(info.config.subjects ?? []), ...missingSubjects];
    changes.push(`subjects: + ${missingSubjects.join(", ")}`);
  }
  if (changes.length === 0) return { kind, name, action: "unchanged" };
  try {
    await jsm.streams.update(name, update);
  } catch (err) {
    throw new TopologyError("topology.update", `cannot update stream ${name} (${changes.join("; ")}): ${(err as Error).message}`, { cause: err });
  }
  return { kind, name, action: "updated", changes };
}

/**
 * INGEST from before the lanes had one subject worked by one unfiltered consumer. Here the
 * subject is dropped from the stream (so nothing new arrives on it), that consumer is deleted
 * (on a work-queue stream it would keep the lane consumers from being created: the server
 * refuses overlapping filters, 10100), and every item still queued on the old subject is moved
 * to its lane by its declared NarSize (an undecodable one to the small lane, whose worker
 * dead-letters it). Safe to repeat and to run from several processes at once: a moved copy's
 * msgID is its old sequence, so two movers store it once. With nothing left to move it costs a
 * stream info, a consumer info and one message get at each start.
 */
async function migrateLegacyIngest(jsm: JetStreamManager, js: JetStreamClient): Promise<TopologyAction | null> {
  const changes: string[] = [];
  const info = await jsm.streams.info(STREAMS.ingest);
  const subjects = info.config.subjects ?? [];
  if (subjects.includes(LEGACY_INGEST.subject)) {
    await jsm.streams.update(STREAMS.ingest, { subjects: subjects.filter((s) => s !== LEGACY_INGEST.subject) });
    changes.push(`subjects: - ${LEGACY_INGEST.subject}`);
  }
  if (info.state.consumer_count > 0) {
    const legacy = await jsm.consumers.info(STREAMS.ingest, LEGACY_INGEST.consumer).catch((err) => {
      if (isJetStreamApiError(err, JetStreamApiCodes.ConsumerNotFound)) return null;
      throw err;
    });
    if (legacy !== null && !legacy.config.filter_subject) {
      await jsm.consumers.delete(STREAMS.ingest, LEGACY_INGEST.consumer).catch((err) => {
        if (!isJetStreamApiError(err, JetStreamApiCodes.ConsumerNotFound)) throw err;
      });
      changes.push(`consumer ${LEGACY_INGEST.consumer} (unfiltered) deleted`);
    }
  }
  let moved = 0;
  for (let from = 1; ; ) {
    // STREAM.MSG.GET takes next_by_subj since server 2.9.0; the client types it for direct get only.
    const next = { seq: from, next_by_subj: LEGACY_INGEST.subject } as unknown as { seq: number };
    const old = await jsm.streams.getMessage(STREAMS.ingest, next);
    if (old === null) break;
    let lane = INGEST_LANES.small;
    try {
      lane = INGEST_LANES[ingestLaneOf(decodeIngestWorkItem(old.data).meta.narSize)];
    } catch {
      // stays in the small lane: its worker dead-letters an item that does not decode
    }
    await js.publish(lane.subject, old.data, { msgID: `${STREAMS.ingest}-legacy-${old.seq}` });
    await jsm.streams.deleteMessage(STREAMS.ingest, old.seq, false).catch((err) => {
      if (!isJetStreamApiError(err, MoreJetStreamApiCodes.SequenceNotFound, MoreJetStreamApiCodes.StreamMsgDeleteFailed)) throw err;
    });
    moved++;
    from = old.seq + 1;
  }
  if (moved > 0) changes.push(`${moved} item(s) queued on ${LEGACY_INGEST.subject} moved to their lane`);
  return changes.length > 0 ? { kind: "stream", name: STREAMS.ingest, action: "updated", changes } : null;
}

function kvOptions(spec: BucketSpec, replicas: number): Partial<KvOptions> {
  return {
    description: spec.description,
    history: 1,
    replicas,
    storage: StorageType.File,
    allow_direct: true,
    ...(spec.ttlMs ? { ttl: spec.ttlMs } : {}),
  };
}

/** The KV bucket's stream as Kvm creates it, reduced to what we check and update. */
function kvStreamSpec(spec: BucketSpec, replicas: number): StreamSpec {
  return {
    config: {
      name: `KV_${spec.name}`,
      subjects: [kvKeySubject(spec.name, ">")],
      num_replicas: replicas,
      max_age: nanos(spec.ttlMs ?? 0),
      description: spec.description,
    },
    updatable: ["num_replicas", "max_age", "description"],
    check: (info) => (info.config.max_msgs_per_subject < 1 ? ["max_msgs_per_subject (history) is unlimited"] : []),
  };
}

export async function ensureTopology(nc: NatsConnection, options: TopologyOptions = {}): Promise<Topology> {
  const replicas = options.replicas ?? 1;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
    throw new TopologyError("topology.replicas", `replicas must be 1 to 5, got ${replicas}`);
  }
  const maxPayload = nc.info?.max_payload ?? 1024 * 1024;
  const maxBlockBytes = options.maxBlockBytes ?? maxPayload;
  if (maxBlockBytes > maxPayload) {
    throw new TopologyError("topology.max-block", `maxBlockBytes ${maxBlockBytes} exceeds the server's max_payload ${maxPayload}`);
  }
  if (!serverVersionAtLeast(nc, MIN_SERVER_VERSION)) {
    throw new TopologyError("topology.server-version", `nats-server ${nc.info?.version ?? "?"} at ${nc.getServer()} is too old: nixcas needs ${MIN_SERVER_VERSION} or newer (direct get, discard_new_per_subject)`);
  }
  const report = options.onAction ?? (() => {});
  const jsm = await openJetStreamManager(nc);
  for (const spec of streamSpecs(replicas, maxBlockBytes)) report(await ensureStream(jsm, spec, "stream"));
  const migrated = await migrateLegacyIngest(jsm, jetstream(nc));
  if (migrated !== null) report(migrated);

  const js = jetstream(nc);
  const kvm = new Kvm(js);
  const kv = {} as Record<KvBucketName, KV>;
  for (const spec of BUCKET_SPECS) {
    const existed = (await streamInfo(jsm, `KV_${spec.name}`)) !== null;
    if (!existed) {
      kv[spec.name] = await kvm.create(spec.name, kvOptions(spec, replicas));
      report({ kind: "kv", name: spec.name, action: "created" });
    } else {
      const action = await ensureStream(jsm, kvStreamSpec(spec, replicas), "kv");
      report({ ...action, name: spec.name });
      kv[spec.name] = await kvm.create(spec.name, kvOptions(spec, replicas));
    }
  }

  setSha256Backend("native");
  const objm = new Objm(js);
  const stagingStream = `OBJ_${STAGING_BUCKET}`;
  if ((await streamInfo(jsm, stagingStream)) === null) {
    await objm.create(STAGING_BUCKET, {
      description: "whole NARs uploaded by clients that do not chunk",
      ttl: nanos(STAGING_TTL_MS),
      storage: StorageType.File,
      replicas,
    });
    report({ kind: "object-store", name: STAGING_BUCKET, action: "created" });
  } else {
    const action = await ensureStream(
      jsm,
      { config: { name: stagingStream, subjects: [`$O.${STAGING_BUCKET}.C.>`, `$O.${STAGING_BUCKET}.M.>`], num_replicas: replicas, max_age: nanos(STAGING_TTL_MS) }, updatable: ["num_replicas", "max_age"] },
      "object-store",
    );
    report({ ...action, name: STAGING_BUCKET });
  }
  const staging = await objm.open(STAGING_BUCKET);
  return { nc, js, jsm, kv, staging };
}

/** Opens an existing topology without creating anything; says which part is missing. */
export async function openTopology(nc: NatsConnection): Promise<Topology> {
  const jsm = await openJetStreamManager(nc);
  const missing: string[] = [];
  const kvDirect = new Map<string, boolean>();
  for (const name of Object.values(STREAMS)) if ((await streamInfo(jsm, name)) === null) missing.push(`stream ${name}`);
  for (const name of KV_BUCKETS) {
    const info = await streamInfo(jsm, `KV_${name}`);
    if (info === null) missing.push(`KV bucket ${name}`);
    else kvDirect.set(name, info.config.allow_direct === true);
  }
  if ((await streamInfo(jsm, `OBJ_${STAGING_BUCKET}`)) === null) missing.push(`object store ${STAGING_BUCKET}`);
  if (missing.length > 0) {
    throw new TopologyError("topology.missing", `the NATS topology is incomplete (missing: ${missing.join(", ")}); run \`nixcas setup\``);
  }
  const js = jetstream(nc);
  const kvm = new Kvm(js);
  const kv = {} as Record<KvBucketName, KV>;
  for (const name of KV_BUCKETS) kv[name] = await kvm.open(name, { allow_direct: kvDirect.get(name) ?? false });
  setSha256Backend("native");
  const staging = await new Objm(js).open(STAGING_BUCKET);
  return { nc, js, jsm, kv, staging };
}

/** What should capture `subject`, for a message naming what is missing. */
function resourceFor(subject: string): string {
  const kv = /^\$KV\.([^.]+)\./.exec(subject);
  if (kv) return `KV bucket ${kv[1]} (stream KV_${kv[1]})`;
  if (subject.startsWith("$O.")) return `object store ${STAGING_BUCKET} (stream OBJ_${STAGING_BUCKET})`;
  if (subject.startsWith("nixcas.work.ingest.")) return `stream ${STREAMS.ingest}`;
  if (subject === SUBJECTS.indexWork) return `stream ${STREAMS.index}`;
  if (subject.startsWith("CID.")) return `stream ${STREAMS.blocks}`;
  return "the stream that captures it";
}

/**
 * When a JetStream write on `subject` failed because no stream captures the subject (a stream or
 * bucket deleted under a running cache), an error that says so; otherwise `err` unchanged.
 * nats.js reports the server's "no responders" as "jetstream is not enabled", and a lost reply
 * as "timeout", whatever the cause: one STREAM.NAMES request tells a missing stream apart.
 */
export async function explainMissingStream(jsm: JetStreamManager, subject: string, err: unknown): Promise<unknown> {
  const suspicious = [...causes(err)].some((e) => ["JetStreamNotEnabled", "NoResponders", "TimeoutError"].includes(e.name) || isJetStreamApiError(e, JetStreamApiCodes.StreamNotFound));
  if (!suspicious) return err;
  try {
    if ((await jsm.streams.names(subject).next()).length > 0) return err;
  } catch {
    return err; // the server does not answer at all: the original error says as much
  }
  return new NixcasError(
    "nats.stream-missing",
    `no JetStream stream stores ${subject}: ${resourceFor(subject)} is missing (deleted while the cache ran?); ` +
      "`nixcas setup` (or restarting `nixcas up`) recreates it",
    { cause: err },
  );
}

async function openJetStreamManager(nc: NatsConnection): Promise<JetStreamManager> {
  try {
    return await jetstreamManager(nc);
  } catch (err) {
    throw new TopologyError(
      "topology.jetstream",
      `JetStream is not available on ${nc.getServer()}: ${(err as Error).message} (start nats-server with -js, and check the account has JetStream)`,
      { cause: err },
    );
  }
}
