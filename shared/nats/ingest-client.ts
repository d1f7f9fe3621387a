// The TypeScript client of the NATS upload API (ingest-protocol.ts; docs/ingest-protocol.md).
// Used by `nixcas push`, the gateway (narinfo PUT) and tests.
//
// A request is answered once the work item is durable in JetStream; a rejected request throws
// the ingester's own error (FormatError / IntegrityError with its code and message), and then
// nothing was enqueued.
import { nuid, type NatsConnection } from "@nats-io/nats-core";
import type { CID } from "multiformats/cid";
import { NixcasError } from "../errors.ts";
import { errorFromReply, type IngestManifestRequest, type IngestNarRequest } from "./ingest-protocol.ts";
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
  readonly #timeoutMs: number;

  constructor(topology: Topology, options: IngestClientOptions = {}) {
    this.#topology = topology;
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

  /** Submits a NAR already in the `staging` object store (the gateway's PUT nar/… put it there). */
  async submitStaged(meta: UploadMetadata, staged: { object: string; compression: string }): Promise<{ uploadId: string }> {
    const request: IngestNarRequest = { meta, nar: { kind: "staged", object: staged.object, compression: staged.compression } };
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
    const object = `upload.${nuid.next()}`;
    await this.#topology.staging.put({ name: object }, toReadableStream(source));
    try {
      return await this.submitStaged(meta, { object, compression });
    } catch (err) {
      // Refused (or no answer): nobody will ever read the object. Best effort; it also expires.
      await this.#topology.staging.delete(object).catch(() => {});
      throw err;
    }
  }

  async #request(subject: string, body: IngestNarRequest | IngestManifestRequest): Promise<{ uploadId: string }> {
    const nc: NatsConnection = this.#topology.nc;
    let reply;
    try {
      reply = await nc.request(subject, JSON.stringify(body), { timeout: this.#timeoutMs });
    } catch (err) {
      const noResponders = (err as { isNoResponders?: () => boolean }).isNoResponders?.() === true || /no responders/i.test(String((err as Error).message));
      if (noResponders) throw new NixcasError("ingest.unavailable", `no ingester answers on ${subject} (is the ingester service running?)`, { cause: err });
      throw new NixcasError("ingest.unavailable", `${subject}: ${(err as Error).message}`, { cause: err });
    }
    let value: unknown;
    try {
      value = JSON.parse(new TextDecoder().decode(reply.data));
    } catch {
      throw new NixcasError("ingest.reply", `${subject}: the ingester's reply is not JSON`);
    }
    if (typeof value === "object" && value !== null) {
      const v = value as { uploadId?: unknown; error?: unknown };
      if (typeof v.error === "object" && v.error !== null) throw errorFromReply(v.error as Record<string, unknown>, subject);
      if (typeof v.uploadId === "string") return { uploadId: v.uploadId };
    }
    throw new NixcasError("ingest.reply", `${subject}: unexpected reply ${JSON.stringify(value).slice(0, 200)}`);
  }
}

async function* concatSources(head: Uint8Array[], rest: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield* head;
  yield* rest;
}

function toReadableStream(source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const iterator = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : (source as Iterable<Uint8Array>)[Symbol.iterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const r = await iterator.next();
      if (r.done) controller.close();
      else controller.enqueue(r.value);
    },
    async cancel() {
      await iterator.return?.();
    },
  });
}
