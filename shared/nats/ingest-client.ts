// The TypeScript client of the NATS upload API (ingest-protocol.ts; docs/ingest-protocol.md).
// Used by `nixcas push`, the gateway (narinfo PUT) and tests.
//
// A request is answered once the work item is durable in JetStream; a rejected request throws
// the ingester's own error (FormatError / IntegrityError with its code and message), and then
// nothing was enqueued.
import type { CID } from "multiformats/cid";
import { NixcasError } from "../errors.ts";
import type { IngestManifestRequest, IngestNarRequest, NarSource } from "./ingest-protocol.ts";
import { newStagingObjectName, StagingStore } from "./staging-store.ts";
import { requestService } from "./service.ts";
import { SUBJECTS } from "./subjects.ts";
import type { Topology } from "./topology.ts";
import { waitForUpload, type UploadStatus } from "./uploads.ts";
import { INLINE_MAX_BYTES, type UploadMetadata } from "./work-items.ts";

export interface IngestClientOptions {
  /** How long a request waits for the ingester's answer; default 30 s. */
  requestTimeoutMs?: number;
}

export class IngestClient {
  readonly #topology: Topology;
  readonly #staging: StagingStore;
  readonly #timeoutMs: number;

  constructor(topology: Topology, options: IngestClientOptions = {}) {
    this.#topology = topology;
    this.#staging = new StagingStore(topology);
    this.#timeoutMs = options.requestTimeoutMs ?? 30_000;
  }

  /**
   * Uploads a whole NAR (compressed with `compression`, default "none"). Up to INLINE_MAX_BYTES
   * it travels inside the request; larger ones are streamed into the `staging` object store
   * first (NATS messages are limited to ~1 MiB), and the staged object is submitted.
   */
  async uploadNar(meta: UploadMetadata, nar: Uint8Array | AsyncIterable<Uint8Array>, options: { compression?: string } = {}): Promise<{ uploadId: string }> {
    const compression = options.compression ?? "none";
    if (nar instanceof Uint8Array) {
      if (nar.length <= INLINE_MAX_BYTES) return this.#submitInline(meta, nar, compression);
      return this.#stageAndSubmit(meta, [nar], compression);
    }
    // Read just past the inline limit to know which way to go, keeping what was read.
    const iterator = nar[Symbol.asyncIterator]();
    const head: Uint8Array[] = [];
    let headBytes = 0;
    let ended = false;
    while (headBytes <= INLINE_MAX_BYTES) {
      const r = await iterator.next();
      if (r.done) {
        ended = true;
        break;
      }
      head.push(r.value);
      headBytes += r.value.length;
    }
    if (ended) return this.#submitInline(meta, Buffer.concat(head), compression);
    const rest: AsyncIterable<Uint8Array> = { [Symbol.asyncIterator]: () => iterator };
    return this.#stageAndSubmit(meta, concatSources(head, rest), compression);
  }

  /**
   * Submits a NAR already in the `staging` object store (the gateway's PUT nar/… put it there).
   * `fileName`: the name the file was uploaded under (`<sha256 of the object>.nar[.ext]`), for
   * the cache to serve it under that name too once the path is indexed.
   */
  async submitStaged(meta: UploadMetadata, staged: { object: string; compression: string; fileName?: string | null }): Promise<{ uploadId: string }> {
    const nar: NarSource = { kind: "staged", object: staged.object, compression: staged.compression };
    if (staged.fileName != null) nar.fileName = staged.fileName;
    const request: IngestNarRequest = { meta, nar };
    return this.#request(SUBJECTS.ingestNar, request);
  }

  /**
   * Submits a NAR the caller chunked itself: every chunk and manifest node must already be
   * published as blocks (ask `nixcas.index.missing-chunks` which ones the cache lacks).
   */
  async submitManifest(meta: UploadMetadata, root: CID): Promise<{ uploadId: string }> {
    const request: IngestManifestRequest = { meta, manifest: root.toString() };
    return this.#request(SUBJECTS.ingestManifest, request);
  }

  /** Resolves on `done` or `failed`, or with the last known state after `timeoutMs`. */
  waitFor(uploadId: string, timeoutMs: number): Promise<UploadStatus> {
    return waitForUpload(this.#topology, uploadId, timeoutMs);
  }

  #submitInline(meta: UploadMetadata, bytes: Uint8Array, compression: string): Promise<{ uploadId: string }> {
    const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
    const request: IngestNarRequest = { meta, nar: { kind: "inline", data, compression } };
    return this.#request(SUBJECTS.ingestNar, request);
  }

  async #stageAndSubmit(meta: UploadMetadata, source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>, compression: string): Promise<{ uploadId: string }> {
    const object = newStagingObjectName();
    await this.#staging.put(object, source);
    try {
      return await this.submitStaged(meta, { object, compression });
    } catch (err) {
      // Refused (or no answer): nobody will ever read the object. Best effort; it also expires.
      await this.#staging.delete(object).catch(() => {});
      throw err;
    }
  }

  async #request(subject: string, body: IngestNarRequest | IngestManifestRequest): Promise<{ uploadId: string }> {
    let reply: unknown;
    try {
      reply = await requestService<unknown>(this.#topology.nc, subject, body, { timeoutMs: this.#timeoutMs, responder: "the ingester service" });
    } catch (err) {
      // No answer at all (the ingester's own refusals keep their code and class).
      if (err instanceof NixcasError && (err.code === "service.unavailable" || err.code === "service.request")) {
        throw new NixcasError("ingest.unavailable", err.message, { cause: err });
      }
      throw err;
    }
    const uploadId = (reply as { uploadId?: unknown } | null)?.uploadId;
    if (typeof uploadId === "string") return { uploadId };
    throw new NixcasError("ingest.reply", `${subject}: unexpected reply ${JSON.stringify(reply).slice(0, 200)}`);
  }
}

async function* concatSources(head: Uint8Array[], rest: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield* head;
  yield* rest;
}
