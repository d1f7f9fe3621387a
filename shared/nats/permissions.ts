// What each NATS role may publish and subscribe to: least privilege per process (issue 7;
// docs/nats-notes.md, "NATS authentication"). The user JWT of a role (nats-auth.ts) carries
// exactly these lists; anything else is refused by the server ("Permissions Violation").
//
// Written from the subjects, streams and buckets the code uses (subjects.ts, topology.ts,
// index-protocol.ts) and the JetStream API subjects nats.js v3 sends for them:
//   stream info            $JS.API.STREAM.INFO.<stream>          (openTopology, kvm/objm open)
//   account info           $JS.API.INFO                          (jetstreamManager(), readiness)
//   direct get             $JS.API.DIRECT.GET.<stream>.<subject> (KV gets, block reads: by
//                          last_by_subj, the subject in the API subject, so it is permissioned)
//   message get / delete   $JS.API.STREAM.MSG.GET|DELETE.<stream>
//   consumer create        $JS.API.CONSUMER.CREATE.<stream>.<name>[.<filter>] (2.9+; ordered
//                          consumers of KV watches and staged reads have random names)
//   pull                   $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>, acks $JS.ACK.<stream>.>
//   flow control replies   $JS.FC.<stream>.>  (push consumers of KV watches)
//   KV writes              $KV.<bucket>.<key>; object store $O.<bucket>.C|M.>
// Replies come back on the role's own inbox prefix (`_INBOX_<role>`, set as nats.js
// `inboxPrefix`), the only inbox a role may subscribe to, so no role reads another's replies.
// Services answer requests through the JWT's response permission (`resp`), not a publish
// permission on inboxes.
//
// Only `admin` manages streams (STREAM.CREATE/UPDATE/DELETE, and PURGE of anything but the
// staging object store): `nixcas setup` / `nixcas up` create the topology, services only open it.
import { INDEX_ADMIN_SUBJECTS, INDEX_QUERY_SUBJECTS } from "./index-protocol.ts";
import { BLOCK_SUBJECT_FILTER, INGEST_LANES, kvKeySubject, SUBJECTS } from "./subjects.ts";
import { inboxPrefixOf, type NatsRole } from "./roles.ts";
import { TIER_SUBJECTS } from "./tier-protocol.ts";
import { STAGING_BUCKET, STREAMS, type KvBucketName } from "./topology.ts";

export { inboxPrefixOf, isNatsRole, NATS_ROLES, type NatsRole } from "./roles.ts";

export interface RolePermissions {
  /** Subjects the role may publish to (requests, JetStream API calls, writes). */
  publish: readonly string[];
  /** Subjects the role may subscribe to. */
  subscribe: readonly string[];
  /** Answers requests it receives (services): the JWT grants one reply per request. */
  responds: boolean;
}

/** The durable consumer the indexer works INDEX with (services/indexer/indexer.ts). */
const INDEX_CONSUMER = "indexer";
/** The consumer on ADVISORIES that dead-letters a work consumer's lost items (shared/nats/work-queue.ts). */
const maxDeliveriesConsumer = (consumer: string) => `${consumer}-max-deliveries`;

const API = "$JS.API";
const kvStream = (bucket: KvBucketName) => `KV_${bucket}`;
const STAGING_STREAM = `OBJ_${STAGING_BUCKET}`;

/** JetStream account info (every jetstreamManager(), and the readiness check). */
const JS_INFO = [`${API}.INFO`];

/**
 * What openTopology reads: the info of every stream, bucket and the object store (all in the
 * account are nixcas's; stream info is configuration and counts, never message contents).
 */
const OPEN_TOPOLOGY = [...JS_INFO, `${API}.STREAM.NAMES`, `${API}.STREAM.INFO.*`];

/** Reads of stored messages of a stream: direct gets (any replica) and leader gets. */
function readStream(stream: string): string[] {
  return [`${API}.DIRECT.GET.${stream}.>`, `${API}.STREAM.MSG.GET.${stream}`];
}

function kvRead(bucket: KvBucketName): string[] {
  return readStream(kvStream(bucket));
}

/** A KV watch: an ordered push consumer, whose flow-control requests must be answered. */
function kvWatch(bucket: KvBucketName): string[] {
  return [`${API}.CONSUMER.CREATE.${kvStream(bucket)}.>`, `${API}.CONSUMER.DELETE.${kvStream(bucket)}.>`, `$JS.FC.${kvStream(bucket)}.>`];
}

function kvWrite(bucket: KvBucketName): string[] {
  return [...kvRead(bucket), kvKeySubject(bucket, ">")];
}

const BLOCKS_READ = readStream(STREAMS.blocks);

/** Reading cold blocks (shared/cold/cold-blocks.ts): where a block is, and its pack's object key. */
const COLD_READ = [...kvRead("cold"), ...kvRead("packs")];

/**
 * A whole-stream scan with an ordered pull consumer (shared/nats/stream-scan.ts: a BLOCKS scan,
 * a KV bucket's entries): create, info and delete its consumers (`*`: one pattern for the three,
 * which keeps the tierer's JWT under the server's 4 KiB control line), and pull.
 */
function orderedScan(stream: string): string[] {
  return [`${API}.CONSUMER.*.${stream}.>`, `${API}.CONSUMER.MSG.NEXT.${stream}.>`];
}

/**
 * Storing blocks (BlockStore.put). A dedup hit on a corrupt stored block (squatted by a client
 * that could publish on CID.sha256.>, or damaged on disk) is repaired by deleting that one
 * message and storing the verified frame again (docs/architecture.md, "Blocks"); any role that
 * writes blocks may therefore delete messages of BLOCKS. Whoever finds a corrupt block reports it
 * on nixcas.events.block.corrupt.*.
 */
const BLOCKS_WRITE = [...BLOCKS_READ, BLOCK_SUBJECT_FILTER, `${API}.STREAM.MSG.DELETE.${STREAMS.blocks}`, SUBJECTS.blockCorruptFilter];

/** Reading a staged object: its metadata (a get) and its chunks through an ordered pull consumer. */
const STAGING_READ = [
  ...readStream(STAGING_STREAM),
  `${API}.CONSUMER.CREATE.${STAGING_STREAM}.>`,
  `${API}.CONSUMER.MSG.NEXT.${STAGING_STREAM}.>`,
  `${API}.CONSUMER.DELETE.${STAGING_STREAM}.>`,
];

/**
 * Writing and deleting staged objects. The object store deletes an object's chunks by a purge
 * filtered on its chunk subject — the one PURGE a non-admin role needs, and only on the staging
 * store, whose objects are disposable copies (they expire after a day anyway).
 */
const STAGING_WRITE = [...STAGING_READ, `$O.${STAGING_BUCKET}.C.>`, `$O.${STAGING_BUCKET}.M.>`, `${API}.STREAM.PURGE.${STAGING_STREAM}`];

/**
 * A work-queue worker (shared/nats/work-queue.ts): its durable consumer (created and updated by
 * the worker itself, with the consumer-create API with or without the filter token), pulls and
 * acks; dead letters of the stream; and the consumer on ADVISORIES that dead-letters items whose
 * last delivery was lost (it reads and deletes them in the work stream by sequence).
 */
function workQueue(stream: string, consumer: string): string[] {
  // CREATE (with or without the filter token), INFO; the wildcard also lets a worker delete or
  // reset its own consumer, nothing else's.
  const consumerApi = (s: string, c: string) => [`${API}.CONSUMER.*.${s}.${c}`, `${API}.CONSUMER.*.${s}.${c}.>`, `${API}.CONSUMER.MSG.NEXT.${s}.${c}`, `$JS.ACK.${s}.${c}.>`];
  return [
    ...consumerApi(stream, consumer),
    ...consumerApi(STREAMS.advisories, maxDeliveriesConsumer(consumer)),
    `${API}.STREAM.MSG.GET.${stream}`,
    `${API}.STREAM.MSG.DELETE.${stream}`,
    SUBJECTS.deadLetter(stream),
  ];
}

/** Every service registers as a NATS microservice: `$SRV.PING|INFO|STATS[.<name>[.<id>]]`. */
const MICROSERVICE_SUBSCRIBE = ["$SRV.>"];

/** Path events (added / failed / deleted) published by whoever finishes, fails or deletes a path. */
const PATH_EVENTS = ["nixcas.events.path.>"];

/** Every service's readiness check reads KV `paths` (shared/nats/readiness.ts). */
const READINESS = kvRead("paths");

function role(publish: string[], subscribe: string[], responds: boolean): RolePermissions {
  return { publish: [...new Set(publish)], subscribe: [...new Set(subscribe)], responds };
}

function servicePermissions(name: NatsRole, publish: string[], serves: string[]): RolePermissions {
  return role([...OPEN_TOPOLOGY, ...READINESS, ...publish], [`${inboxPrefixOf(name)}.>`, ...MICROSERVICE_SUBSCRIBE, ...serves], true);
}

const PERMISSIONS: Record<NatsRole, () => RolePermissions> = {
  // Validates uploads, stores the blocks pushers send it (nixcas.ingest.block), checks staged
  // objects exist, enqueues work (INGEST lanes, INDEX for manifests), records `queued`, and
  // answers uploaders waiting for an outcome (nixcas.ingest.status: a watch on KV uploads).
  ingester: () =>
    servicePermissions(
      "ingester",
      [
        ...Object.values(INGEST_LANES).map((l) => l.subject),
        SUBJECTS.indexWork,
        ...kvWrite("uploads"),
        ...kvWatch("uploads"),
        ...BLOCKS_WRITE,
        ...readStream(STAGING_STREAM),
      ],
      [SUBJECTS.ingestNar, SUBJECTS.ingestManifest, SUBJECTS.ingestBlock, SUBJECTS.ingestStatus],
    ),
  // Works INGEST: reads (and then deletes) staged NARs, stores blocks, hands items to INDEX.
  chunker: () =>
    servicePermissions(
      "chunker",
      [
        ...Object.values(INGEST_LANES).flatMap((l) => workQueue(STREAMS.ingest, l.consumer)),
        ...BLOCKS_WRITE,
        ...STAGING_WRITE,
        SUBJECTS.indexWork,
        ...kvWrite("uploads"),
        ...PATH_EVENTS,
      ],
      [SUBJECTS.chunkerStats],
    ),
  // Works INDEX, owns the catalog (paths, nars, listings, files) and answers the queries and the
  // admin requests about paths.
  indexer: () =>
    servicePermissions(
      "indexer",
      [
        ...workQueue(STREAMS.index, INDEX_CONSUMER),
        ...BLOCKS_WRITE,
        ...kvWrite("paths"),
        ...kvWrite("nars"),
        ...kvWrite("listings"),
        ...kvWrite("files"),
        ...kvWrite("uploads"),
        ...PATH_EVENTS,
        // Its check before it advertises a path reads chunks wherever they are, cold ones too.
        ...COLD_READ,
      ],
      [...Object.values(INDEX_QUERY_SUBJECTS), ...Object.values(INDEX_ADMIN_SUBJECTS)],
    ),
  // Serves HTTP: reads everything a client may GET, checks HTTP tokens, stages whole NARs,
  // stores logs/listings/realisations, submits uploads and waits for their status (asking the
  // ingester), and passes
  // an admin's path deletion to the indexer.
  gateway: () =>
    servicePermissions(
      "gateway",
      [
        ...BLOCKS_WRITE,
        ...STAGING_WRITE,
        ...kvRead("paths"),
        ...kvRead("nars"),
        ...kvRead("files"),
        ...kvRead("tokens"),
        ...kvWrite("listings"),
        ...kvWrite("logs"),
        ...kvWrite("realisations"),
        ...kvWrite("staged"),
        SUBJECTS.ingestNar,
        SUBJECTS.ingestManifest,
        SUBJECTS.ingestStatus,
        ...Object.values(INDEX_ADMIN_SUBJECTS),
        // Cold chunks (KV cold → pack), the archived check of a narinfo, access reports, restores.
        ...COLD_READ,
        ...kvRead("access"),
        TIER_SUBJECTS.accessReport,
        TIER_SUBJECTS.restore,
      ],
      [SUBJECTS.gatewayStats],
    ),
  // Moves the chunks of unread paths to the cold tier (docs/tiering.md): reads the catalog and
  // BLOCKS, deletes the hot copy of a block by sequence once it is sealed in a cold pack; owns
  // KV cold, packs, access, pins and tierer; keeps last access from the gateways' reports and
  // path-added events; answers `nixcas tier run|gc|pin|stats` and restores. GC scans BLOCKS and
  // the catalog, stores the live blocks of a pack it repacks back into BLOCKS (verified by
  // BlockStore.put like every write), and deletes expired paths through the indexer.
  tierer: () =>
    servicePermissions(
      "tierer",
      [
        ...BLOCKS_WRITE,
        ...orderedScan(STREAMS.blocks),
        ...(["paths", "nars", "listings", "logs"] as const).flatMap((b) => [...kvRead(b), ...orderedScan(kvStream(b))]),
        ...(["cold", "packs", "access", "pins"] as const).flatMap((b) => [...kvWrite(b), ...orderedScan(kvStream(b))]),
        ...kvWrite("tierer"),
        INDEX_ADMIN_SUBJECTS.deletePath,
        INDEX_ADMIN_SUBJECTS.deleteNars,
      ],
      [...Object.values(TIER_SUBJECTS), SUBJECTS.pathAddedFilter],
    ),
  // `nixcas push` from any machine: asks what the cache lacks, sends blocks to the ingester
  // (which verifies them before storing: a pusher never publishes on CID.sha256.>) and submits
  // manifests. No JetStream at all, no KV, nothing it could read of other uploads.
  pusher: () =>
    role(
      [
        INDEX_QUERY_SUBJECTS.hasPaths,
        INDEX_QUERY_SUBJECTS.missingChunks,
        INDEX_QUERY_SUBJECTS.lookup,
        SUBJECTS.ingestManifest,
        SUBJECTS.ingestBlock,
        SUBJECTS.ingestStatus,
      ],
      [`${inboxPrefixOf("pusher")}.>`],
      false,
    ),
  // Operators: `nixcas setup`, `nixcas up`'s topology, `nixcas verify --repair`, tokens.
  admin: () => role([">"], [">"], true),
};

export function permissionsOf(name: NatsRole): RolePermissions {
  return PERMISSIONS[name]();
}
