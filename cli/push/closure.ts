// What to push, according to the real Nix: `nix path-info --json [--recursive]` resolves the
// arguments (store paths, `result` links…) to store paths and their closure, with the metadata a
// narinfo needs (NarHash, NarSize, references, deriver, CA, signatures). Its output is parsed
// strictly: the NAR hash we compute locally is checked against it, and the metadata is what the
// cache will sign and serve.
import { spawn } from "node:child_process";
import { FormatError, NixcasError } from "../../shared/errors.ts";
import { parseHash, type Hash } from "../../shared/hash.ts";
import { parseContentAddress, parseStorePath, storePathBaseName } from "../../shared/store-path.ts";

/** One store path as the local Nix store records it. */
export interface LocalPathInfo {
  /** Full store path (logical: in the store dir, not the chroot's physical location). */
  storePath: string;
  hashPart: string;
  /** `<hash>-<name>`. */
  baseName: string;
  narHash: Hash;
  narSize: number;
  /** Base names of the references (self-reference included, as Nix lists it). */
  references: string[];
  /** Base name of the deriver, or null. */
  deriver: string | null;
  ca: string | null;
  sigs: string[];
}

export interface QueryOptions {
  /** `--store` for Nix (a chroot directory or a store URL); undefined: Nix's default store. */
  store?: string;
  /** The closure (default) or only the paths named. */
  closure: boolean;
  /** The cache's store dir: every path must be in it. */
  storeDir: string;
  /** The Nix command (default `nix`). */
  nixBin?: string;
}

/**
 * Asks Nix for the paths (and their closure) and returns them references first: every path
 * comes after all the paths it references within the result.
 */
export async function queryPaths(args: string[], options: QueryOptions): Promise<LocalPathInfo[]> {
  const nixArgs = ["--extra-experimental-features", "nix-command", "path-info", "--json"];
  if (options.closure) nixArgs.push("--recursive");
  if (options.store !== undefined) nixArgs.push("--store", options.store);
  nixArgs.push("--", ...args);
  const stdout = await runNix(options.nixBin ?? "nix", nixArgs);
  const infos = parsePathInfoJson(stdout, options.storeDir);
  if (options.closure) checkClosed(infos);
  return referencesFirst(infos);
}

async function runNix(bin: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.once("error", (e) => reject(new NixcasError("push.nix", `cannot run ${bin}: ${e.message} (is Nix installed and on PATH?)`, { cause: e })));
    child.once("close", (code, signal) => {
      const stderr = Buffer.concat(err).toString("utf8").trim();
      if (code !== 0) {
        reject(new NixcasError("push.nix", `${bin} ${args.join(" ")} failed (${signal ?? `exit code ${code}`})${stderr ? `:\n${stderr}` : ""}`));
      } else resolve(Buffer.concat(out).toString("utf8"));
    });
  });
}

/**
 * Parses `nix path-info --json` output: a list of objects (Nix ≤ 2.18) or an object keyed by
 * store path (Nix ≥ 2.19). Unknown fields (registrationTime, ultimate, closureSize…) are ignored;
 * the fields we use must be present and well-formed. A path Nix reports as not valid is an error
 * naming it.
 */
export function parsePathInfoJson(text: string, storeDir: string): LocalPathInfo[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new FormatError("push.path-info", `nix path-info --json printed something that is not JSON: ${(err as Error).message}`);
  }
  let entries: Array<[string | undefined, unknown]>;
  if (Array.isArray(value)) entries = value.map((v) => [undefined, v]);
  else if (isRecord(value)) entries = Object.entries(value);
  else throw new FormatError("push.path-info", "nix path-info --json printed neither a list nor an object");
  const seen = new Map<string, LocalPathInfo>();
  for (const [key, entry] of entries) {
    const info = parseEntry(key, entry, storeDir);
    if (!seen.has(info.storePath)) seen.set(info.storePath, info);
  }
  return [...seen.values()];
}

function parseEntry(key: string | undefined, entry: unknown, storeDir: string): LocalPathInfo {
  const where = key ?? (isRecord(entry) && typeof entry.path === "string" ? entry.path : "an entry");
  const fail = (msg: string): never => {
    throw new FormatError("push.path-info", `nix path-info --json, ${where}: ${msg}`);
  };
  if (entry === null) fail("not valid in the store (no such path, or not built)");
  if (!isRecord(entry)) return fail("not an object");
  const path = key ?? entry.path;
  if (typeof path !== "string") return fail("no 'path'");
  if (entry.valid === false) fail("not valid in the store (no such path, or not built)");
  const sp = parseStorePath(path, storeDir);
  if (typeof entry.narHash !== "string") fail("'narHash' is missing or not a string");
  const narHash = parseHash(entry.narHash as string, "sha256");
  const narSize = entry.narSize;
  if (typeof narSize !== "number" || !Number.isSafeInteger(narSize) || narSize <= 0) fail(`'narSize' ${JSON.stringify(narSize)} is not a positive integer`);
  const refs = entry.references;
  if (!Array.isArray(refs) || !refs.every((r) => typeof r === "string")) return fail("'references' is not a list of store paths");
  const references = [...new Set(refs.map((r: string) => storePathBaseName(parseStorePath(r, storeDir))))].sort();
  let deriver: string | null = null;
  if (entry.deriver !== undefined && entry.deriver !== null) {
    if (typeof entry.deriver !== "string") fail("'deriver' is not a string");
    const d = parseStorePath(entry.deriver as string, storeDir);
    if (!d.name.endsWith(".drv")) fail(`deriver ${JSON.stringify(entry.deriver)} is not a .drv`);
    deriver = storePathBaseName(d);
  }
  let ca: string | null = null;
  if (entry.ca !== undefined && entry.ca !== null) {
    // Newer Nix may print a structured CA; we only know (and the cache only accepts) the text form.
    if (typeof entry.ca !== "string") fail(`'ca' is ${JSON.stringify(entry.ca)}, not the text form ('fixed:…' / 'text:…')`);
    parseContentAddress(entry.ca as string);
    ca = entry.ca as string;
  }
  const sigsValue = entry.signatures ?? [];
  if (!Array.isArray(sigsValue) || !sigsValue.every((s) => typeof s === "string")) return fail("'signatures' is not a list of strings");
  return {
    storePath: path,
    hashPart: sp.hashPart,
    baseName: storePathBaseName(sp),
    narHash,
    narSize: narSize as number,
    references,
    deriver,
    ca,
    sigs: sigsValue as string[],
  };
}

/** With --recursive, every reference must itself be in the output, or Nix's answer is inconsistent. */
function checkClosed(infos: LocalPathInfo[]): void {
  const names = new Set(infos.map((i) => i.baseName));
  for (const info of infos) {
    const missing = info.references.find((r) => !names.has(r));
    if (missing !== undefined) {
      throw new FormatError("push.path-info", `nix path-info --recursive listed ${info.storePath}, which references ${missing}, but not ${missing} itself`);
    }
  }
}

/**
 * Orders paths so that each comes after the paths it references: a depth-first walk in input
 * order that emits a path once all its references are emitted (iterative, so a deep chain of
 * references cannot overflow the stack). References outside the set (with --no-closure) and
 * self-references are ignored.
 */
export function referencesFirst(infos: LocalPathInfo[]): LocalPathInfo[] {
  const byName = new Map(infos.map((i) => [i.baseName, i]));
  const state = new Map<string, "visiting" | "done">();
  const out: LocalPathInfo[] = [];
  for (const root of infos) {
    if (state.has(root.baseName)) continue;
    const stack: Array<{ info: LocalPathInfo; next: number }> = [{ info: root, next: 0 }];
    state.set(root.baseName, "visiting");
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const refs = top.info.references;
      if (top.next < refs.length) {
        const ref = refs[top.next++]!;
        const dep = byName.get(ref);
        if (dep === undefined || ref === top.info.baseName) continue;
        const s = state.get(ref);
        if (s === "done") continue;
        if (s === "visiting") {
          const cycle = [...stack.map((f) => f.info.storePath), dep.storePath];
          throw new FormatError("push.reference-cycle", `store paths reference each other in a cycle, which Nix does not allow: ${cycle.slice(-6).join(" -> ")}`);
        }
        state.set(ref, "visiting");
        stack.push({ info: dep, next: 0 });
      } else {
        stack.pop();
        state.set(top.info.baseName, "done");
        out.push(top.info);
      }
    }
  }
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
