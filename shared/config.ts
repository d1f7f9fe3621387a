// Configuration from environment variables: one table that is both the parser and the
// documentation (README's table is generated from it with `nixcas config --markdown`).
// Every problem is reported at start, all at once, with the variable's name and what it takes.
import { readFileSync } from "node:fs";
import { DURATION_SYNTAX, parseDuration } from "./duration.ts";
import { ConfigError } from "./errors.ts";
import { LARGE_NAR_BYTES } from "./nats/subjects.ts";

type Kind = "string" | "int" | "bytes" | "path" | "url-list" | "level" | "bool" | "duration";

interface Variable {
  name: string;
  kind: Kind;
  default?: string;
  description: string;
  /** Inclusive bounds for numbers. */
  min?: number;
  max?: number;
}

export const VARIABLES = [
  { name: "NATS_URL", kind: "url-list", description: "NATS server(s), comma-separated. Unset: `nixcas up` starts a local nats-server (JWT auth, creds in NIXCAS_DATA_DIR/nats-auth), and commands such as `nixcas push` or `nixcas token` use the one a running `nixcas up` of the same NIXCAS_DATA_DIR started, with its admin creds; a lone service refuses to start." },
  { name: "NATS_CREDS", kind: "path", description: "NATS credentials file (JWT + nkey) for this process: its role's (`nixcas creds <role>`, or `nixcas nats-auth init`; docs/nats-notes.md)." },
  { name: "NATS_TOKEN", kind: "string", description: "NATS token, when the server uses token authentication." },
  { name: "NIXCAS_DATA_DIR", kind: "path", default: ".nixcas", description: "Where `nixcas up` keeps the local nats-server's JetStream store and the generated signing key; one `nixcas up` at a time (lock file `nixcas-up.lock`)." },
  { name: "NIXCAS_HTTP_HOST", kind: "string", default: "0.0.0.0", description: "Address the gateway listens on." },
  { name: "NIXCAS_HTTP_PORT", kind: "int", default: "8080", min: 0, max: 65535, description: "Port the gateway listens on (0: any free port)." },
  { name: "NIXCAS_HEALTH_PORT", kind: "int", min: 0, max: 65535, description: "Port of a lone service's (`nixcas service <name>`) HTTP health server, on NIXCAS_HTTP_HOST: `/healthz` (the process answers) and `/readyz` (NATS connected, JetStream answering, KV readable; else 503 with the reason as JSON), for container probes, and `/metrics` (Prometheus text; docs/operations.md, section Observability). Unset: none. The gateway (also in `nixcas up`) answers both on its own port." },
  { name: "NIXCAS_SECRET_KEY_FILE", kind: "path", description: "The cache's signing key, in Nix's format (`nixcas key generate`). `nixcas up` generates one under NIXCAS_DATA_DIR when unset; the gateway requires it." },
  { name: "NIXCAS_KEY_NAME", kind: "string", default: "nixcas-1", description: "Key name used when `nixcas up` generates a key." },
  { name: "NIXCAS_PUSH_TOKEN", kind: "string", description: "A static token from the environment with pull and push scope (for deployments that keep it in a secret), besides the tokens of `nixcas token create`. Sent as `Authorization: Bearer <token>` or as the password of Basic auth (what Nix sends from netrc)." },
  { name: "NIXCAS_PUSH_TOKEN_FILE", kind: "path", description: "A file holding NIXCAS_PUSH_TOKEN (a Docker or Kubernetes secret mounted as a file); used when NIXCAS_PUSH_TOKEN is unset." },
  { name: "NIXCAS_PRIVATE", kind: "bool", default: "0", description: "1: reads (narinfo, NARs, logs, blocks…) need a token with pull scope too. Nix sends its netrc credentials on GET. 0: anonymous reads (a public cache)." },
  { name: "NIXCAS_ALLOW_ANONYMOUS_PUSH", kind: "bool", default: "0", description: "1: anyone who reaches the gateway may upload, and the cache signs what they send (a warning is logged at start). Only for a gateway no stranger can reach. 0: uploads need a token with push scope." },
  { name: "NIXCAS_UPLOAD_RATE", kind: "int", default: "100", min: 1, max: 1000000, description: "Upload requests (HTTP PUT/DELETE) per second one token (or, without a token, one client address) may make on average; over it: 429 with Retry-After (400 to Nix before 2.34, which re-sends a PUT answered 429 without its body)." },
  { name: "NIXCAS_UPLOAD_BURST", kind: "int", default: "500", min: 1, max: 1000000, description: "Upload requests one token may make at once before NIXCAS_UPLOAD_RATE applies." },
  { name: "NIXCAS_HTTP_MAX_CONNECTIONS", kind: "int", default: "10000", min: 1, max: 1000000, description: "Open HTTP connections the gateway accepts in all; over it new connections are closed at once." },
  { name: "NIXCAS_HTTP_MAX_CONNECTIONS_PER_CLIENT", kind: "int", default: "256", min: 0, max: 1000000, description: "Open HTTP connections one client address may hold; over it its new connections are closed at once, so one client cannot starve the others. 0: no per-client limit (behind a proxy every client has the proxy's address: limit there instead)." },
  { name: "NIXCAS_HTTP_HEADER_TIMEOUT_SECONDS", kind: "int", default: "10", min: 1, max: 600, description: "A client must send a request's headers within this many seconds of starting it, and an idle connection is closed after it." },
  { name: "NIXCAS_TRUSTED_UPLOADER_KEYS", kind: "string", default: "", description: "Space-separated Nix public keys: a Sig by one of these names on an upload must verify, or the upload is refused." },
  { name: "NIXCAS_STORE_DIR", kind: "path", default: "/nix/store", description: "The Nix store directory this cache serves." },
  { name: "NIXCAS_PRIORITY", kind: "int", default: "40", min: 0, max: 1000, description: "`Priority` announced in nix-cache-info." },
  { name: "NIXCAS_REPLICAS", kind: "int", default: "1", min: 1, max: 5, description: "Replicas of every stream, KV bucket and object store created at start." },
  { name: "NIXCAS_CHUNK_MIN", kind: "bytes", default: "16384", min: 64, max: 67108864, description: "FastCDC minimum chunk size in bytes." },
  { name: "NIXCAS_CHUNK_AVG", kind: "bytes", default: "65536", min: 256, max: 268435456, description: "FastCDC average chunk size in bytes." },
  { name: "NIXCAS_CHUNK_MAX", kind: "bytes", default: "262144", min: 1024, max: 786432, description: "FastCDC maximum chunk size in bytes (a compressed chunk must fit in one NATS message)." },
  { name: "NIXCAS_ZSTD_LEVEL", kind: "int", default: "3", min: 1, max: 19, description: "zstd level for stored chunks." },
  { name: "NIXCAS_MAX_NAR_SIZE", kind: "bytes", default: "68719476736", min: 1, description: "Largest NAR (uncompressed) accepted; larger uploads get 413." },
  { name: "NIXCAS_HOT_CACHE_BYTES", kind: "bytes", default: "268435456", min: 0, description: "Gateway's in-memory cache of verified hot chunks, in bytes of their stored zstd frames." },
  { name: "NIXCAS_PUT_WAIT_SECONDS", kind: "int", default: "240", min: 1, max: 290, description: "How long a narinfo PUT waits for its path to become readable before answering (Nix gives up after 300 s)." },
  { name: "NIXCAS_CHUNKER_CONCURRENCY", kind: "int", default: "2", min: 1, max: 64, description: `NARs one chunker process works on at once in each lane of INGEST: NARs under ${LARGE_NAR_BYTES / 1048576} MiB (declared NarSize) and larger ones have separate slots, so a small upload never waits behind large ones (up to twice this many NARs at once).` },
  { name: "NIXCAS_INDEXER_CONCURRENCY", kind: "int", default: "8", min: 1, max: 256, description: "Index items one indexer process works on at once." },
  { name: "NIXCAS_ACK_WAIT_SECONDS", kind: "int", default: "60", min: 5, max: 3600, description: "Work-queue ack_wait; workers send in-progress heartbeats well inside it." },
  { name: "NIXCAS_MAX_DELIVER", kind: "int", default: "5", min: 1, max: 100, description: "Deliveries of a work item before it goes to the dead-letter stream." },
  { name: "NIXCAS_COLD_DIR", kind: "path", description: "The cold tier as a directory (one machine without S3). `nixcas up` uses `<NIXCAS_DATA_DIR>/cold` when neither this nor NIXCAS_S3_BUCKET is set." },
  { name: "NIXCAS_S3_BUCKET", kind: "string", description: "The cold tier as an S3 bucket (packs of cold chunks). Credentials: the standard AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE…)." },
  { name: "NIXCAS_S3_ENDPOINT", kind: "string", description: "S3 endpoint URL for S3-compatible stores (MinIO…); unset: AWS. Path-style addressing is used with an endpoint." },
  { name: "NIXCAS_S3_REGION", kind: "string", default: "us-east-1", description: "S3 region." },
  { name: "NIXCAS_S3_PREFIX", kind: "string", default: "nixcas/", description: "Key prefix of every object nixcas writes in the bucket." },
  { name: "NIXCAS_S3_STORAGE_CLASS", kind: "string", default: "STANDARD_IA", description: "Storage class packs are written with (STANDARD, STANDARD_IA, GLACIER_IR, GLACIER, DEEP_ARCHIVE…)." },
  { name: "NIXCAS_S3_LIFECYCLE", kind: "string", default: "GLACIER_IR:30,DEEP_ARCHIVE:180", description: "The bucket lifecycle rule `nixcas setup` installs for packs: `<storage class>:<days after creation>` transitions, comma-separated; `none`: no rule." },
  { name: "NIXCAS_COLD_AFTER", kind: "duration", default: "45d", description: "A path not read (or pushed) for this long has its chunks moved to the cold tier by the tierer. Keep it above 30d, Nix's positive narinfo cache: a client told about a path must be able to download it." },
  { name: "NIXCAS_TIER_INTERVAL", kind: "duration", default: "1h", description: "How often the tierer runs a tiering pass (also `nixcas tier run`)." },
  { name: "NIXCAS_PACK_BYTES", kind: "bytes", default: "64MiB", min: 1048576, max: 4294967296, description: "Target size of one cold pack (archive classes bill a minimum per object)." },
  { name: "NIXCAS_GC_GRACE", kind: "duration", default: "1h", description: "Blocks and packs younger than this are never swept by garbage collection (uploads in flight are safe)." },
  { name: "NIXCAS_GC_INTERVAL", kind: "duration", description: "Run garbage collection on this schedule in the tierer; unset: only `nixcas gc`." },
  { name: "NIXCAS_RETENTION", kind: "duration", description: "Scheduled GC also deletes paths neither pushed nor read for this long (pins and their closures kept); unset: keep every path." },
  { name: "NIXCAS_LOG_LEVEL", kind: "level", default: "info", description: "debug, info, warn or error." },
] as const satisfies readonly Variable[];

export type VariableName = (typeof VARIABLES)[number]["name"];

export interface NixcasConfig {
  nats: { servers: string[] | null; credsFile: string | null; token: string | null };
  dataDir: string;
  http: { host: string; port: number };
  /** NIXCAS_HEALTH_PORT: a lone service's health server; null = none. */
  healthPort: number | null;
  secretKeyFile: string | null;
  keyName: string;
  pushToken: string | null;
  /** NIXCAS_PRIVATE: reads need a pull token. */
  private: boolean;
  /** NIXCAS_ALLOW_ANONYMOUS_PUSH: uploads without a token (open on purpose). */
  anonymousPush: boolean;
  uploadRate: { perSecond: number; burst: number };
  httpLimits: { maxConnections: number; maxConnectionsPerClient: number; headerTimeoutSeconds: number };
  trustedUploaderKeys: string[];
  storeDir: string;
  priority: number;
  replicas: number;
  chunking: { minSize: number; avgSize: number; maxSize: number; zstdLevel: number };
  maxNarSize: number;
  hotCacheBytes: number;
  putWaitSeconds: number;
  chunkerConcurrency: number;
  indexerConcurrency: number;
  ackWaitSeconds: number;
  maxDeliver: number;
  logLevel: "debug" | "info" | "warn" | "error";
  tiering: {
    /** NIXCAS_COLD_DIR; null: not set (nixcas up then uses <dataDir>/cold unless S3 is set). */
    coldDir: string | null;
    s3: { bucket: string; endpoint: string | null; region: string; prefix: string; storageClass: string; lifecycle: string } | null;
    coldAfterMs: number;
    intervalMs: number;
    packBytes: number;
    gcGraceMs: number;
    gcIntervalMs: number | null;
    retentionMs: number | null;
  };
}

const BYTE_SUFFIX: Record<string, number> = { "": 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3 };

/** Parses `65536`, `64KiB`, `64k`, `1GiB`… into bytes; null if it is none of these. */
export function parseByteSize(text: string): number | null {
  const m = /^(\d+)\s*([a-zA-Z]*)$/.exec(text.trim());
  if (!m) return null;
  const factor = BYTE_SUFFIX[m[2]!.toLowerCase()];
  if (factor === undefined) return null;
  const value = Number(m[1]) * factor;
  return Number.isSafeInteger(value) ? value : null;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): NixcasConfig {
  const problems: string[] = [];
  const values = new Map<string, string | number | null>();
  for (const v of VARIABLES as readonly Variable[]) {
    const raw = env[v.name] !== undefined && env[v.name] !== "" ? env[v.name]! : v.default;
    if (raw === undefined) {
      values.set(v.name, null);
      continue;
    }
    switch (v.kind) {
      case "int":
      case "bytes": {
        const n = v.kind === "int" ? (/^\d+$/.test(raw.trim()) ? Number(raw.trim()) : null) : parseByteSize(raw);
        if (n === null) {
          problems.push(`${v.name}=${JSON.stringify(raw)}: expected ${v.kind === "int" ? "a whole number" : "a size in bytes such as 65536 or 64KiB"}`);
        } else if ((v.min !== undefined && n < v.min) || (v.max !== undefined && n > v.max)) {
          problems.push(`${v.name}=${raw}: must be between ${v.min ?? 0} and ${v.max ?? "∞"}`);
        } else values.set(v.name, n);
        break;
      }
      case "bool":
        if (!["0", "1", "true", "false"].includes(raw.trim())) problems.push(`${v.name}=${JSON.stringify(raw)}: expected 1 or 0`);
        else values.set(v.name, raw.trim() === "1" || raw.trim() === "true" ? 1 : 0);
        break;
      case "duration": {
        const ms = parseDuration(raw);
        if (ms === null) problems.push(`${v.name}=${JSON.stringify(raw)}: expected ${DURATION_SYNTAX}`);
        else values.set(v.name, ms);
        break;
      }
      case "level":
        if (!["debug", "info", "warn", "error"].includes(raw)) problems.push(`${v.name}=${JSON.stringify(raw)}: expected debug, info, warn or error`);
        else values.set(v.name, raw);
        break;
      case "url-list":
        for (const url of raw.split(",")) {
          if (!/^(nats|tls|ws|wss):\/\/[^\s]+$|^[\w.-]+(:\d+)?$/.test(url.trim())) problems.push(`${v.name}: ${JSON.stringify(url)} is not a NATS URL (nats://host:port)`);
        }
        values.set(v.name, raw);
        break;
      default:
        values.set(v.name, raw);
    }
  }
  const num = (name: VariableName) => values.get(name) as number;
  const str = (name: VariableName) => values.get(name) as string | null;
  const chunking = { minSize: num("NIXCAS_CHUNK_MIN"), avgSize: num("NIXCAS_CHUNK_AVG"), maxSize: num("NIXCAS_CHUNK_MAX"), zstdLevel: num("NIXCAS_ZSTD_LEVEL") };
  if (!problems.some((p) => p.startsWith("NIXCAS_CHUNK_")) && !(chunking.minSize < chunking.avgSize && chunking.avgSize < chunking.maxSize)) {
    problems.push(`NIXCAS_CHUNK_MIN < NIXCAS_CHUNK_AVG < NIXCAS_CHUNK_MAX must hold (got ${chunking.minSize}, ${chunking.avgSize}, ${chunking.maxSize})`);
  }
  // Secrets mounted as files (compose `secrets:`) keep the token out of the process environment listing.
  let pushToken = str("NIXCAS_PUSH_TOKEN");
  const pushTokenFile = str("NIXCAS_PUSH_TOKEN_FILE");
  if (pushToken === null && pushTokenFile !== null) {
    try {
      pushToken = readFileSync(pushTokenFile, "utf8").trim();
      if (pushToken === "") problems.push(`NIXCAS_PUSH_TOKEN_FILE=${pushTokenFile}: the file is empty`);
    } catch (err) {
      problems.push(`NIXCAS_PUSH_TOKEN_FILE=${pushTokenFile}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  }
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  ${problems.join("\n  ")}`);
  const servers = str("NATS_URL");
  return {
    nats: { servers: servers ? servers.split(",").map((s) => s.trim()) : null, credsFile: str("NATS_CREDS"), token: str("NATS_TOKEN") },
    dataDir: str("NIXCAS_DATA_DIR")!,
    http: { host: str("NIXCAS_HTTP_HOST")!, port: num("NIXCAS_HTTP_PORT") },
    healthPort: values.get("NIXCAS_HEALTH_PORT") === null ? null : num("NIXCAS_HEALTH_PORT"),
    secretKeyFile: str("NIXCAS_SECRET_KEY_FILE"),
    keyName: str("NIXCAS_KEY_NAME")!,
    pushToken,
    private: num("NIXCAS_PRIVATE") === 1,
    anonymousPush: num("NIXCAS_ALLOW_ANONYMOUS_PUSH") === 1,
    uploadRate: { perSecond: num("NIXCAS_UPLOAD_RATE"), burst: num("NIXCAS_UPLOAD_BURST") },
    httpLimits: {
      maxConnections: num("NIXCAS_HTTP_MAX_CONNECTIONS"),
      maxConnectionsPerClient: num("NIXCAS_HTTP_MAX_CONNECTIONS_PER_CLIENT"),
      headerTimeoutSeconds: num("NIXCAS_HTTP_HEADER_TIMEOUT_SECONDS"),
    },
    trustedUploaderKeys: (str("NIXCAS_TRUSTED_UPLOADER_KEYS") ?? "").split(/\s+/).filter(Boolean),
    storeDir: str("NIXCAS_STORE_DIR")!,
    priority: num("NIXCAS_PRIORITY"),
    replicas: num("NIXCAS_REPLICAS"),
    chunking,
    maxNarSize: num("NIXCAS_MAX_NAR_SIZE"),
    hotCacheBytes: num("NIXCAS_HOT_CACHE_BYTES"),
    putWaitSeconds: num("NIXCAS_PUT_WAIT_SECONDS"),
    chunkerConcurrency: num("NIXCAS_CHUNKER_CONCURRENCY"),
    indexerConcurrency: num("NIXCAS_INDEXER_CONCURRENCY"),
    ackWaitSeconds: num("NIXCAS_ACK_WAIT_SECONDS"),
    maxDeliver: num("NIXCAS_MAX_DELIVER"),
    logLevel: str("NIXCAS_LOG_LEVEL") as NixcasConfig["logLevel"],
    tiering: {
      coldDir: str("NIXCAS_COLD_DIR"),
      s3:
        str("NIXCAS_S3_BUCKET") === null
          ? null
          : {
              bucket: str("NIXCAS_S3_BUCKET")!,
              endpoint: str("NIXCAS_S3_ENDPOINT"),
              region: str("NIXCAS_S3_REGION")!,
              prefix: str("NIXCAS_S3_PREFIX") ?? "",
              storageClass: str("NIXCAS_S3_STORAGE_CLASS")!,
              lifecycle: str("NIXCAS_S3_LIFECYCLE") ?? "",
            },
      coldAfterMs: num("NIXCAS_COLD_AFTER"),
      intervalMs: num("NIXCAS_TIER_INTERVAL"),
      packBytes: num("NIXCAS_PACK_BYTES"),
      gcGraceMs: num("NIXCAS_GC_GRACE"),
      gcIntervalMs: values.get("NIXCAS_GC_INTERVAL") === null ? null : num("NIXCAS_GC_INTERVAL"),
      retentionMs: values.get("NIXCAS_RETENTION") === null ? null : num("NIXCAS_RETENTION"),
    },
  };
}

/** The variables as a Markdown table, for the README. */
export function configMarkdown(): string {
  const rows = (VARIABLES as readonly Variable[]).map((v) => `| \`${v.name}\` | ${v.default !== undefined && v.default !== "" ? `\`${v.default}\`` : "—"} | ${v.description} |`);
  return ["| variable | default | meaning |", "|---|---|---|", ...rows].join("\n");
}
