// S3 for tests: s3rver (an S3 server in this process, files in a temp dir) on a free port with a
// bucket, and in front of it an "archive front" — a small HTTP proxy that implements what s3rver
// lacks and the cold tier depends on. It stands in for AWS S3; it is not AWS:
//
// - s3rver stores x-amz-storage-class but serves GLACIER/DEEP_ARCHIVE objects like any other and
//   refuses GLACIER_IR; it has no RestoreObject (405) and no bucket lifecycle (NotImplemented).
// - The front keeps each object's storage class itself (PUT header, or `transition()`, which plays
//   the part of a lifecycle transition), answers GET of an object in GLACIER or DEEP_ARCHIVE with
//   403 InvalidObjectState until a RestoreObject has completed, shows `x-amz-storage-class` and
//   `x-amz-restore` on HEAD/GET as S3 does, and answers RestoreObject as S3 documents it
//   (https://docs.aws.amazon.com/AmazonS3/latest/API/API_RestoreObject.html: 202 accepted,
//   409 RestoreAlreadyInProgress, 200 when already restored, 403 InvalidObjectState when the
//   object is not archived). A restore completes after `restoreDelayMs`, or when the test calls
//   `completeRestores()` (null delay): tests wait for the state, never for a time.
// - It stores the lifecycle configuration PUT to the bucket and serves it back on GET, so a test
//   can check what `nixcas setup` sent. It does not run the transitions (`transition()` does).
//
// Everything else goes to s3rver unchanged (a batch DeleteObjects too: the front then still
// remembers the deleted objects' classes, harmless as a re-PUT resets them). s3rver does not check SigV4 signatures, so the front
// may drop the storage-class header it takes over.
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { S3ColdStore, type S3Settings } from "../../shared/cold/s3-cold-store.ts";

/** s3rver's fixed account. */
export const S3RVER_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };
const ARCHIVE_CLASSES = new Set(["GLACIER", "DEEP_ARCHIVE"]);
/** Classes S3 accepts on PUT (s3rver's own list lacks GLACIER_IR). */
const STORAGE_CLASSES = new Set(["STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "OUTPOSTS", "EXPRESS_ONEZONE"]);

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverConstructor = new (options: Record<string, unknown>) => S3rverInstance;
// s3rver is CommonJS without type declarations.
const S3rver = createRequire(import.meta.url)("s3rver") as S3rverConstructor;

export interface S3TestServerOptions {
  bucket?: string;
  /** How long a RestoreObject takes; null (default): until `completeRestores()`. */
  restoreDelayMs?: number | null;
}

export interface FrontRequest {
  method: string;
  /** Path as sent, e.g. `/bucket/nixcas/packs/x.pack`. */
  path: string;
  query: string;
}

export interface S3TestServer {
  bucket: string;
  /** The archive front: what nixcas is pointed at (NIXCAS_S3_ENDPOINT). */
  endpoint: string;
  /** s3rver itself, behind the front. */
  s3rverEndpoint: string;
  /** Settings for an S3ColdStore on the front; `prefix` defaults to `nixcas/`. */
  settings(overrides?: Partial<S3Settings>): S3Settings;
  /** An S3ColdStore on the front (or on s3rver directly with `direct`). */
  store(overrides?: Partial<S3Settings>, direct?: boolean): S3ColdStore;
  /** Environment for a nixcas process using this bucket (NIXCAS_S3_* and AWS credentials). */
  env(overrides?: Partial<S3Settings>): Record<string, string>;
  /** Plays a lifecycle transition: the object with full S3 key `key` (prefix included) is now in `storageClass`. */
  transition(key: string, storageClass: string): void;
  /** Completes every restore in progress. */
  completeRestores(): void;
  /** Ends the restored copy of `key` (as its expiry would). */
  expireRestore(key: string): void;
  /** The lifecycle configuration XML last PUT to the bucket, or null. */
  lifecycleXml(): string | null;
  /** Requests the front received, oldest first. */
  readonly requests: readonly FrontRequest[];
  stop(): Promise<void>;
}

interface ObjectState {
  storageClass: string;
  restore: "none" | "in-progress" | "done";
}

export async function startS3(options: S3TestServerOptions = {}): Promise<S3TestServer> {
  const bucket = options.bucket ?? "nixcas-test";
  const restoreDelayMs = options.restoreDelayMs ?? null;
  const directory = await mkdtemp(join(tmpdir(), "nixcas-s3rver-"));
  const s3rver = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory, configureBuckets: [{ name: bucket }], allowMismatchedSignatures: true });
  const s3rverPort = (await s3rver.run()).port;
  const s3rverEndpoint = `http://127.0.0.1:${s3rverPort}`;

  /** Per `bucket/key` (decoded). Objects never PUT through the front are STANDARD. */
  const objects = new Map<string, ObjectState>();
  const lifecycles = new Map<string, string>();
  const requests: FrontRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();

  const stateOf = (id: string): ObjectState => objects.get(id) ?? { storageClass: "STANDARD", restore: "none" };
  const readable = (s: ObjectState) => !ARCHIVE_CLASSES.has(s.storageClass) || s.restore === "done";

  const front: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendError(res, 500, "InternalError", (err as Error).message);
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://front");
    const method = req.method ?? "GET";
    requests.push({ method, path: url.pathname, query: url.search.slice(1) });
    const [, bucketName = "", ...keyParts] = url.pathname.split("/");
    const key = keyParts.map(decodeURIComponent).join("/");
    const id = `${decodeURIComponent(bucketName)}/${key}`;
    const params = url.searchParams;

    if (key === "" && params.has("lifecycle")) return bucketLifecycle(req, res, method, decodeURIComponent(bucketName));
    if (key === "") {
      await forward(req, res);
      return;
    }

    if (method === "POST" && params.has("restore")) return restoreObject(req, res, id);
    if (method === "PUT" && !params.has("uploadId") && !params.has("tagging") && !("x-amz-copy-source" in req.headers)) {
      const storageClass = String(req.headers["x-amz-storage-class"] ?? "STANDARD");
      if (!STORAGE_CLASSES.has(storageClass)) {
        await drain(req);
        return sendError(res, 400, "InvalidStorageClass", "The storage class you specified is not valid");
      }
      const status = await forward(req, res, { dropHeaders: ["x-amz-storage-class"] });
      if (status >= 200 && status < 300) objects.set(id, { storageClass, restore: "none" });
      return;
    }
    if (method === "DELETE" && [...params.keys()].every((k) => k === "x-id")) {
      const status = await forward(req, res);
      if (status >= 200 && status < 300) objects.delete(id);
      return;
    }
    if ((method === "GET" || method === "HEAD") && [...params.keys()].every((k) => k === "x-id" || k.startsWith("response-"))) {
      const state = stateOf(id);
      if (method === "GET" && !readable(state) && (await exists(id))) {
        await drain(req);
        return sendError(res, 403, "InvalidObjectState", "The operation is not valid for the object's storage class", `<StorageClass>${state.storageClass}</StorageClass>`);
      }
      await forward(req, res, { responseHeaders: objectHeaders(state) });
      return;
    }
    await forward(req, res);
  }

  function objectHeaders(state: ObjectState): Record<string, string> {
    const headers: Record<string, string> = {};
    // S3 leaves x-amz-storage-class out for STANDARD.
    if (state.storageClass !== "STANDARD") headers["x-amz-storage-class"] = state.storageClass;
    if (state.restore === "in-progress") headers["x-amz-restore"] = 'ongoing-request="true"';
    if (state.restore === "done") headers["x-amz-restore"] = `ongoing-request="false", expiry-date="${new Date(Date.now() + 86_400_000).toUTCString()}"`;
    return headers;
  }

  async function restoreObject(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    await drain(req);
    if (!(await exists(id))) return sendError(res, 404, "NoSuchKey", "The specified key does not exist.");
    const state = stateOf(id);
    if (!ARCHIVE_CLASSES.has(state.storageClass)) return sendError(res, 403, "InvalidObjectState", "Restore is not allowed for the object's current storage class");
    if (state.restore === "in-progress") return sendError(res, 409, "RestoreAlreadyInProgress", "Object restore is already in progress");
    if (state.restore === "done") {
      res.writeHead(200).end();
      return;
    }
    objects.set(id, { ...state, restore: "in-progress" });
    if (restoreDelayMs !== null) {
      const timer = setTimeout(() => {
        timers.delete(timer);
        const now = objects.get(id);
        if (now?.restore === "in-progress") objects.set(id, { ...now, restore: "done" });
      }, restoreDelayMs);
      timers.add(timer);
    }
    res.writeHead(202).end();
  }

  async function bucketLifecycle(req: IncomingMessage, res: ServerResponse, method: string, name: string): Promise<void> {
    const body = await drain(req);
    if (method === "PUT") {
      lifecycles.set(name, body.toString("utf8"));
      res.writeHead(200).end();
    } else if (method === "GET") {
      const xml = lifecycles.get(name);
      if (xml === undefined) return sendError(res, 404, "NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist");
      res.writeHead(200, { "content-type": "application/xml" }).end(xml);
    } else if (method === "DELETE") {
      lifecycles.delete(name);
      res.writeHead(204).end();
    } else {
      sendError(res, 405, "MethodNotAllowed", "The specified method is not allowed against this resource.");
    }
  }

  /** Whether s3rver has the object (a HEAD of its own: s3rver serves unsigned requests). */
  async function exists(id: string): Promise<boolean> {
    return new Promise((resolve, reject) => {
      const r = httpRequest(`${s3rverEndpoint}/${id.split("/").map(encodeURIComponent).join("/")}`, { method: "HEAD" }, (up) => {
        up.resume();
        resolve(up.statusCode === 200);
      });
      r.on("error", reject);
      r.end();
    });
  }

  /** Sends the request on to s3rver; resolves with s3rver's status once the response is relayed. */
  function forward(req: IncomingMessage, res: ServerResponse, how: { dropHeaders?: string[]; responseHeaders?: Record<string, string> } = {}): Promise<number> {
    return new Promise((resolve, reject) => {
      const headers = { ...req.headers };
      // The front already answered any `Expect: 100-continue`.
      delete headers.expect;
      for (const h of how.dropHeaders ?? []) delete headers[h];
      const up = httpRequest(`${s3rverEndpoint}${req.url}`, { method: req.method, headers }, (upRes) => {
        const out = { ...upRes.headers };
        delete out["x-amz-storage-class"];
        res.writeHead(upRes.statusCode ?? 502, { ...out, ...(how.responseHeaders ?? {}) });
        upRes.pipe(res);
        upRes.on("end", () => resolve(upRes.statusCode ?? 502));
        upRes.on("error", reject);
      });
      up.on("error", reject);
      req.pipe(up);
    });
  }

  await new Promise<void>((resolve) => front.listen(0, "127.0.0.1", resolve));
  const endpoint = `http://127.0.0.1:${(front.address() as AddressInfo).port}`;

  const settings = (overrides: Partial<S3Settings> = {}): S3Settings => ({
    bucket,
    endpoint,
    region: "us-east-1",
    prefix: "nixcas/",
    storageClass: "STANDARD",
    lifecycle: "none",
    ...overrides,
  });

  return {
    bucket,
    endpoint,
    s3rverEndpoint,
    settings,
    store: (overrides = {}, direct = false) => new S3ColdStore(settings(direct ? { endpoint: s3rverEndpoint, ...overrides } : overrides), { credentials: S3RVER_CREDENTIALS }),
    env: (overrides = {}) => {
      const s = settings(overrides);
      return {
        NIXCAS_S3_BUCKET: s.bucket,
        NIXCAS_S3_ENDPOINT: s.endpoint!,
        NIXCAS_S3_REGION: s.region,
        NIXCAS_S3_PREFIX: s.prefix,
        NIXCAS_S3_STORAGE_CLASS: s.storageClass,
        NIXCAS_S3_LIFECYCLE: s.lifecycle,
        AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
      };
    },
    transition: (key, storageClass) => {
      const id = `${bucket}/${key}`;
      objects.set(id, { storageClass, restore: "none" });
    },
    completeRestores: () => {
      for (const [id, state] of objects) if (state.restore === "in-progress") objects.set(id, { ...state, restore: "done" });
    },
    expireRestore: (key) => {
      const id = `${bucket}/${key}`;
      const state = objects.get(id);
      if (state !== undefined) objects.set(id, { ...state, restore: "none" });
    },
    lifecycleXml: () => lifecycles.get(bucket) ?? null,
    requests,
    stop: async () => {
      for (const timer of timers) clearTimeout(timer);
      front.closeAllConnections();
      await new Promise<void>((resolve) => front.close(() => resolve()));
      await s3rver.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

function drain(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () => resolve(Buffer.concat(parts)));
    req.on("error", reject);
  });
}

function sendError(res: ServerResponse, status: number, code: string, message: string, extra = ""): void {
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message>${extra}<RequestId>archive-front</RequestId></Error>`;
  res.writeHead(status, { "content-type": "application/xml", "content-length": Buffer.byteLength(body) }).end(body);
}
