// The cold tier as an S3 bucket (docs/tiering.md, "Cold tier backends and packs"). Objects live
// under NIXCAS_S3_PREFIX and are written with NIXCAS_S3_STORAGE_CLASS; the bucket's lifecycle
// rule (lifecycle.ts, installed by `nixcas setup`) may move them on to archive classes later, so
// the class an object has now is asked of the server (HEAD), never assumed.
//
// Reads are ranged GETs. An object in GLACIER or DEEP_ARCHIVE answers GET with 403
// InvalidObjectState until a RestoreObject has made a temporary copy readable
// (https://docs.aws.amazon.com/AmazonS3/latest/API/API_RestoreObject.html); HEAD tells how a
// restore is going in its `x-amz-restore` header (`ongoing-request="true"`, or `"false"` with
// the expiry of the restored copy).
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  RestoreObjectCommand,
  S3Client,
  S3ServiceException,
  type S3ClientConfig,
  type StorageClass,
} from "@aws-sdk/client-s3";
import type { NixcasConfig } from "../config.ts";
import { NixcasError } from "../errors.ts";
import { ARCHIVE_STORAGE_CLASSES, archivedError, checkColdKey, checkRange, COLD_ERRORS, missingError, shortRangeError } from "./cold-errors.ts";
import type { ColdObjectState, ColdStore } from "./cold-store.ts";

export type S3Settings = NonNullable<NixcasConfig["tiering"]["s3"]>;

/** Retrieval tier of restores: Standard (GLACIER 3–5 h, DEEP_ARCHIVE within 12 h). */
const RESTORE_TIER = "Standard";

export class S3ColdStore implements ColdStore {
  readonly description: string;
  readonly client: S3Client;
  readonly bucket: string;
  /** Key prefix of every object nixcas writes (NIXCAS_S3_PREFIX). */
  readonly prefix: string;
  readonly #storageClass: string;

  /** `clientConfig` adds to what the settings give (tests pass the credentials of their server). */
  constructor(settings: S3Settings, clientConfig: S3ClientConfig = {}) {
    this.bucket = settings.bucket;
    this.prefix = settings.prefix;
    this.#storageClass = settings.storageClass;
    this.description = `s3://${settings.bucket}/${settings.prefix}`;
    this.client = new S3Client({
      region: settings.region,
      ...(settings.endpoint === null
        ? {}
        : {
            endpoint: settings.endpoint,
            // S3-compatible servers (MinIO, s3rver…) serve buckets by path, not by DNS name.
            forcePathStyle: true,
            // Checksums only where the API requires them: many S3-compatible servers do not
            // understand the flexible-checksum trailers AWS SDKs now send by default. Packs are
            // verified frame by frame after the write anyway (docs/tiering.md).
            requestChecksumCalculation: "WHEN_REQUIRED",
            responseChecksumValidation: "WHEN_REQUIRED",
          }),
      ...clientConfig,
    });
  }

  async put(key: string, body: Uint8Array, storageClass: string = this.#storageClass): Promise<void> {
    const Key = this.#key(key);
    await this.#call(key, () =>
      this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ContentLength: body.length, ContentType: "application/octet-stream", StorageClass: storageClass as StorageClass })),
    );
  }

  async getRange(key: string, offset: number, length: number): Promise<Uint8Array> {
    checkRange(this.description, key, offset, length);
    const Key = this.#key(key);
    // An empty range has no HTTP spelling (bytes=a-b is inclusive); only existence is asked.
    if (length === 0) {
      if ((await this.head(key)) === null) throw missingError(this.description, key);
      return new Uint8Array(0);
    }
    const bytes = await this.#call(key, async () => {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key, Range: `bytes=${offset}-${offset + length - 1}` }));
      if (res.Body === undefined) return new Uint8Array(0);
      return res.Body.transformToByteArray();
    });
    if (bytes.length !== length) throw shortRangeError(this.description, key, offset, length, bytes.length);
    return bytes;
  }

  async head(key: string): Promise<ColdObjectState | null> {
    const Key = this.#key(key);
    try {
      const res = await this.#call(key, () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key })));
      // S3 leaves the header out for STANDARD.
      const storageClass = res.StorageClass ?? "STANDARD";
      // INTELLIGENT_TIERING objects in its opt-in archive tiers say so in x-amz-archive-status.
      const archived = ARCHIVE_STORAGE_CLASSES.has(storageClass) || res.ArchiveStatus !== undefined;
      return { bytes: res.ContentLength ?? 0, storageClass, archived, restore: archived ? restoreStateOf(res.Restore) : "none" };
    } catch (err) {
      if (err instanceof NixcasError && err.code === COLD_ERRORS.missing) return null;
      throw err;
    }
  }

  async restore(key: string, days: number): Promise<void> {
    const state = await this.head(key);
    if (state === null) throw missingError(this.description, key);
    if (!state.archived || state.restore === "in-progress") return;
    const Key = this.#key(key);
    try {
      // Also when "done": asking again extends the restored copy's expiry.
      await this.#call(key, () =>
        this.client.send(new RestoreObjectCommand({ Bucket: this.bucket, Key, RestoreRequest: { Days: days, GlacierJobParameters: { Tier: RESTORE_TIER } } })),
      );
    } catch (err) {
      // Another reader asked first: that is the outcome wanted.
      if (causeName(err) === "RestoreAlreadyInProgress") return;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    const Key = this.#key(key);
    await this.#call(key, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key })));
  }

  async *list(prefix: string): AsyncIterable<{ key: string; bytes: number }> {
    let token: string | undefined;
    do {
      const res = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken: token }));
      for (const object of res.Contents ?? []) {
        if (object.Key === undefined || !object.Key.startsWith(this.prefix)) continue;
        yield { key: object.Key.slice(this.prefix.length), bytes: object.Size ?? 0 };
      }
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  #key(key: string): string {
    checkColdKey(key);
    return this.prefix + key;
  }

  /** Runs one S3 call on `key`, turning the answers that mean something here into cold.* errors. */
  async #call<T>(key: string, send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (err) {
      const name = causeName(err);
      const status = err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
      if (name === "NoSuchKey" || name === "NotFound" || (status === 404 && name !== "NoSuchBucket")) throw missingError(this.description, key, { cause: err });
      if (name === "InvalidObjectState") throw archivedError(this.description, key, "InvalidObjectState");
      if (name === "InvalidRange") throw new NixcasError(COLD_ERRORS.range, `cold object ${key} in ${this.description}: the range asked for is not in the object`, { cause: err });
      throw new NixcasError(COLD_ERRORS.s3, `S3 request on ${key} in ${this.description} failed: ${name ?? ""} ${(err as Error).message}`.replace(/ +/g, " "), { cause: err });
    }
  }
}

/** `x-amz-restore`: absent (never asked), `ongoing-request="true"`, or `ongoing-request="false", expiry-date="…"`. */
export function restoreStateOf(header: string | undefined): ColdObjectState["restore"] {
  if (header === undefined || header === "") return "none";
  const m = /ongoing-request="(true|false)"/.exec(header);
  if (m === null) return "none";
  return m[1] === "true" ? "in-progress" : "done";
}

function causeName(err: unknown): string | undefined {
  return err instanceof S3ServiceException ? err.name : (err as { name?: string } | null)?.name;
}
