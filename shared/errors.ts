// Error types. Every error that can reach a user names what was wrong and where, so that an
// operator can act on the message alone. `code` is stable (tests and HTTP mapping use it);
// the message is for people.

export class NixcasError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Input from outside (a NAR, a narinfo, a key, a store path…) does not follow its format. */
export class FormatError extends NixcasError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

/** Bytes do not hash to what they were claimed to be. */
export class IntegrityError extends NixcasError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

/** Configuration (environment variables, flags) is missing or invalid. */
export class ConfigError extends NixcasError {
  constructor(message: string, options?: ErrorOptions) {
    super("config", message, options);
  }
}

/**
 * A work item that can never succeed (bad NAR, hash mismatch…): the work queue dead-letters it
 * at once instead of retrying (shared/nats/work-queue.ts).
 */
export class PermanentError extends NixcasError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

/**
 * A PermanentError whose message starts with its code: the message is what ends up as the
 * upload's `reason` and the dead letter's Nixcas-Reason, and the code makes it machine-readable.
 */
export function permanent(code: string, message: string, options?: ErrorOptions): PermanentError {
  return new PermanentError(code, message.startsWith(`${code}: `) ? message : `${code}: ${message}`, options);
}

/**
 * The class of an error as it travels in a service's error reply (shared/nats/service.ts), so
 * the client throws the class the service threw: bad input, bytes that do not match, or
 * anything else.
 */
export type ErrorKind = "FormatError" | "IntegrityError" | "NixcasError";

export function errorKindOf(err: unknown): ErrorKind {
  if (err instanceof IntegrityError) return "IntegrityError";
  if (err instanceof FormatError) return "FormatError";
  return "NixcasError";
}

/** The error of `kind` with this code and message; an unknown kind is a plain NixcasError. */
export function errorOfKind(kind: unknown, code: string, message: string): NixcasError {
  if (kind === "IntegrityError") return new IntegrityError(code, message);
  if (kind === "FormatError") return new FormatError(code, message);
  return new NixcasError(code, message);
}

/**
 * `err` and the errors of its `cause` chain, outermost first (at most `MAX_CAUSES` deep, so a
 * cycle cannot loop): where a wrapped library error decides what a failure means.
 */
export function* causes(err: unknown): Generator<Error> {
  for (let e = err, depth = 0; e instanceof Error && depth < MAX_CAUSES; e = e.cause, depth++) yield e;
}

const MAX_CAUSES = 8;
