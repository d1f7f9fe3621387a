// The check that makes uploaded bytes a NAR the cache may advertise: strict NAR syntax
// (shared/nar.ts), never more bytes than the declared NarSize, and at the end exactly the
// declared NarSize and NarHash. The `.ls` listing is built on the way. One implementation for
// both places that read an upload's bytes: the chunker (the NAR as it is decompressed) and the
// indexer (the chunks of a pre-chunked upload).
//
// Errors: FormatError nar.* (syntax, with the byte offset; nar.size-mismatch) and IntegrityError
// nar.hash-mismatch, with the declared and actual values. Whether they are permanent is the
// caller's business (both dead-letter them).
import { createHash, type Hash } from "node:crypto";
import { FormatError, IntegrityError } from "./errors.ts";
import { NarListingBuilder, type NarListing } from "./nar-listing.ts";
import { NarParser } from "./nar.ts";

/** What the uploader declared (its narinfo's NarHash and NarSize). */
export interface DeclaredNar {
  narHash: Uint8Array;
  narSize: number;
}

/** Which bytes were checked, for the error messages: the NAR itself, or the chunks that make it. */
export type VerifiedBytes = "nar" | "chunks";

const PHRASES: Record<VerifiedBytes, { size: (n: number) => string; hash: (hex: string) => string }> = {
  nar: { size: (n) => `the NAR has ${n} bytes`, hash: (hex) => `the NAR hashes to ${hex}` },
  chunks: { size: (n) => `its chunks hold ${n} bytes`, hash: (hex) => `its chunks hash to ${hex}` },
};

export interface NarVerifierOptions {
  bytes: VerifiedBytes;
  /**
   * Hash the bytes here (default). False when the caller computes the sha256 anyway (the chunk
   * pipeline does, on its workers) and passes it to finish().
   */
  hash?: boolean;
}

export class NarVerifier {
  readonly #declared: DeclaredNar;
  readonly #phrases: (typeof PHRASES)[VerifiedBytes];
  readonly #listing = new NarListingBuilder();
  readonly #parser = new NarParser(this.#listing);
  readonly #sha: Hash | null;
  #size = 0;

  constructor(declared: DeclaredNar, options: NarVerifierOptions) {
    this.#declared = declared;
    this.#phrases = PHRASES[options.bytes];
    this.#sha = options.hash === false ? null : createHash("sha256");
  }

  /** The next bytes of the NAR, in order. */
  write(bytes: Uint8Array): void {
    this.#size += bytes.length;
    if (this.#size > this.#declared.narSize) {
      throw new FormatError("nar.size-mismatch", `NAR size mismatch: the NAR is larger than its declared NarSize of ${this.#declared.narSize} bytes`);
    }
    this.#sha?.update(bytes);
    this.#parser.write(bytes);
  }

  /**
   * After the last byte: the NAR must be complete, of the declared size and hash. `narHash` is
   * the sha256 the caller computed (required when constructed with `hash: false`). Returns the
   * NAR's listing.
   */
  finish(narHash?: Uint8Array): NarListing {
    this.#parser.end();
    const declared = this.#declared;
    if (this.#size !== declared.narSize) {
      throw new FormatError("nar.size-mismatch", `NAR size mismatch: the upload declared NarSize ${declared.narSize}, ${this.#phrases.size(this.#size)}`);
    }
    const digest = narHash ?? this.#sha?.digest();
    if (digest === undefined) throw new TypeError("NarVerifier.finish: no sha256 given, and the verifier was told not to hash");
    if (!Buffer.from(digest).equals(declared.narHash)) {
      throw new IntegrityError(
        "nar.hash-mismatch",
        `NAR hash mismatch: the upload declared sha256 ${Buffer.from(declared.narHash).toString("hex")}, ${this.#phrases.hash(Buffer.from(digest).toString("hex"))}`,
      );
    }
    return this.#listing.listing;
  }
}
