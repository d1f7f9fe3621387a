// Where the bytes of a store path are on this machine. For the default store, the daemon and a
// chroot store (`--store /some/dir`, `local?root=/some/dir`, `?real=`), the path is a directory
// tree we can read and dump ourselves (no subprocess per path, and the NAR streams straight into
// the chunker). Any other store URL (ssh://, s3://, file://…) is read through
// `nix store dump-path`, which yields the same NAR.
import { spawn } from "node:child_process";
import { NixcasError } from "../../shared/errors.ts";
import { dumpPath } from "../../shared/node/nar-dump.ts";

export interface NarSource {
  /** The NAR, streamed. */
  bytes: AsyncIterable<Uint8Array>;
  /** What is read, for messages: a file-system path or a Nix command. */
  where: string;
}

export type StoreAccess =
  /** Physical path = physicalStoreDir + "/" + base name. */
  | { kind: "filesystem"; physicalStoreDir: string }
  | { kind: "nix"; store: string; nixBin: string };

/** How to read paths of `store` (Nix's `--store` value; undefined = the default store). */
export function storeAccess(store: string | undefined, storeDir: string, nixBin = "nix"): StoreAccess {
  if (store === undefined || store === "" || store === "auto" || store === "daemon" || store === "local" || store.startsWith("unix://")) {
    return { kind: "filesystem", physicalStoreDir: storeDir };
  }
  // Nix treats an absolute path as `local?root=<path>` (a chroot store).
  if (store.startsWith("/")) return { kind: "filesystem", physicalStoreDir: stripSlash(store) + storeDir };
  const m = /^local\?(.*)$/.exec(store);
  if (m) {
    const params = new URLSearchParams(m[1]);
    const real = params.get("real");
    if (real) return { kind: "filesystem", physicalStoreDir: stripSlash(real) };
    const root = params.get("root");
    const dir = params.get("store") ?? storeDir;
    return { kind: "filesystem", physicalStoreDir: (root ? stripSlash(root) : "") + dir };
  }
  return { kind: "nix", store, nixBin };
}

export function narSource(access: StoreAccess, baseName: string, storePath: string): NarSource {
  if (access.kind === "filesystem") {
    const where = `${access.physicalStoreDir}/${baseName}`;
    return { bytes: dumpPath(where), where };
  }
  const args = ["--extra-experimental-features", "nix-command", "store", "dump-path", "--store", access.store, "--", storePath];
  return { bytes: runDump(access.nixBin, args), where: `${access.nixBin} ${args.join(" ")}` };
}

async function* runDump(bin: string, args: string[]): AsyncGenerator<Uint8Array> {
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  const err: Buffer[] = [];
  child.stderr.on("data", (b: Buffer) => err.push(b));
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once("error", (e) => reject(new NixcasError("push.nix", `cannot run ${bin}: ${e.message}`, { cause: e })));
    child.once("close", (code, signal) => resolve({ code, signal }));
  });
  closed.catch(() => {});
  let finished = false;
  try {
    for await (const piece of child.stdout) yield piece as Buffer;
    const { code, signal } = await closed;
    if (code !== 0) {
      throw new NixcasError("push.nix", `${bin} ${args.join(" ")} failed (${signal ?? `exit code ${code}`}): ${Buffer.concat(err).toString("utf8").trim()}`);
    }
    finished = true;
  } finally {
    // The consumer stopped early (a size mismatch, a failure): do not leave Nix running.
    if (!finished && child.exitCode === null) child.kill("SIGTERM");
  }
}

function stripSlash(p: string): string {
  return p.endsWith("/") ? p.slice(0, -1) : p;
}
