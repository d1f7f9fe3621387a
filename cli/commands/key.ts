// `nixcas key`: make and inspect the cache's signing key, in Nix's own key-file format, so the
// same file works with `nix-store --generate-binary-cache-key`, `nix store sign` and nixcas.
//
//   nixcas key generate <name> [--secret-file FILE]   write the secret key (default <name>.secret),
//                                                      print the public key
//   nixcas key public <secret-file>                    print the public key of a secret key file
import { readFile, writeFile } from "node:fs/promises";
import { FormatError } from "../../shared/errors.ts";
import { checkKeyName, formatPublicKey, formatSecretKey, generateSecretKey, parseSecretKey, publicKeyOf } from "../../shared/signing.ts";

const USAGE = `usage: nixcas key generate <name> [--secret-file FILE]
       nixcas key public <secret-file>

  generate  writes a new ed25519 secret key to FILE (default <name>.secret, mode 0600; an existing
            file is never overwritten) and prints its public key, for trusted-public-keys
  public    prints the public key of a secret key file
`;

export async function run(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "generate") return generate(rest);
  if (sub === "public") return show(rest);
  if (sub === "--help" || sub === "-h" || sub === "help") {
    process.stdout.write(USAGE);
    return 0;
  }
  return usage(sub === undefined ? "missing sub-command" : `unknown sub-command '${sub}'`);
}

async function generate(args: string[]): Promise<number> {
  let name: string | undefined;
  let file: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    // --out is the spelling of the dispatcher's summary; both are accepted.
    if (arg === "--secret-file" || arg === "--out") {
      const value = args[++i];
      if (value === undefined || value === "") return usage(`${arg} needs a file name`);
      file = value;
    } else if (arg.startsWith("--secret-file=") || arg.startsWith("--out=")) {
      file = arg.slice(arg.indexOf("=") + 1);
      if (file === "") return usage(`${arg} needs a file name`);
    } else if (arg.startsWith("-")) {
      return usage(`unknown option '${arg}'`);
    } else if (name === undefined) {
      name = arg;
    } else {
      return usage(`unexpected argument '${arg}'`);
    }
  }
  if (name === undefined) return usage("missing key name (e.g. cache.example.org-1)");
  try {
    checkKeyName(name);
  } catch (err) {
    if (err instanceof FormatError) return usage(err.message);
    throw err;
  }
  file ??= `${name}.secret`;
  const sk = generateSecretKey(name);
  try {
    // 'wx': never replace a key that may already be trusted somewhere; 0600: it is a secret.
    // No trailing newline, exactly like nix-store --generate-binary-cache-key.
    await writeFile(file, formatSecretKey(sk), { flag: "wx", mode: 0o600 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "EEXIST" ? "the file already exists (remove it first if you really mean to replace the key)" : (err as Error).message;
    process.stderr.write(`nixcas key generate: cannot write '${file}': ${why}\n`);
    return 1;
  }
  process.stdout.write(`${formatPublicKey(publicKeyOf(sk))}\n`);
  return 0;
}

async function show(args: string[]): Promise<number> {
  if (args.length !== 1 || args[0]!.startsWith("-")) return usage("expected exactly one secret key file");
  const file = args[0]!;
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    process.stderr.write(`nixcas key public: cannot read '${file}': ${(err as Error).message}\n`);
    return 1;
  }
  try {
    process.stdout.write(`${formatPublicKey(publicKeyOf(parseSecretKey(text)))}\n`);
  } catch (err) {
    if (!(err instanceof FormatError)) throw err;
    process.stderr.write(`nixcas key public: '${file}': ${err.message}\n`);
    return 1;
  }
  return 0;
}

function usage(message: string): number {
  process.stderr.write(`nixcas key: ${message}\n\n${USAGE}`);
  return 2;
}
