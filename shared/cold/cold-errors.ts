// What every cold store checks and how it fails (the codes of docs/tiering.md, "Cold tier backends
// and packs"), shared by the directory and S3 backends.
import { NixcasError } from "../errors.ts";

/** Error codes of cold stores. */
export const COLD_ERRORS = {
  archived: "cold.archived",
  missing: "cold.missing",
  range: "cold.range",
  key: "cold.key",
  /** Any other failure of an S3 call (the S3 error name is in the message). */
  s3: "cold.s3",
  lifecycle: "cold.lifecycle",
} as const;

/** Storage classes whose objects need a restore before a GET (GLACIER_IR is read directly). */
export const ARCHIVE_STORAGE_CLASSES: ReadonlySet<string> = new Set(["GLACIER", "DEEP_ARCHIVE"]);

/**
 * Object keys are written by nixcas only (`packs/<id>.pack`), but a key is also a path below the
 * directory backend: refuse anything that could leave it or that S3 would treat specially.
 */
export function checkColdKey(key: string): void {
  // Every segment starts with a letter or digit: no "", ".", ".." or hidden (.tmp) segment.
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)*$/.test(key)) {
    throw new NixcasError(COLD_ERRORS.key, `cold object key ${JSON.stringify(key)} is not of the form segment/segment… (letters, digits, '.', '_', '-')`);
  }
}

/** The error readers get for an archived object. */
export function archivedError(description: string, key: string, state: string): NixcasError {
  return new NixcasError(COLD_ERRORS.archived, `cold object ${key} in ${description} is in an archive storage class (${state}); it must be restored (RestoreObject) before it can be read`);
}

export function missingError(description: string, key: string, options?: ErrorOptions): NixcasError {
  return new NixcasError(COLD_ERRORS.missing, `cold object ${key} is not in ${description}`, options);
}

export function checkRange(description: string, key: string, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new NixcasError(COLD_ERRORS.range, `invalid range offset ${offset} length ${length} of cold object ${key} in ${description}`);
  }
}

export function shortRangeError(description: string, key: string, offset: number, length: number, got: number): NixcasError {
  return new NixcasError(COLD_ERRORS.range, `cold object ${key} in ${description}: asked for ${length} bytes at offset ${offset}, got ${got} (the object is shorter)`);
}
