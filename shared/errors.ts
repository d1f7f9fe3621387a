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
