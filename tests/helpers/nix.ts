// An isolated environment for driving the real Nix client (Debian's nix-bin 2.8) in tests:
// its own nix.conf, its own narinfo disk cache, and chroot stores under a temp dir, so tests
// never touch /nix or the user's ~/.cache, and never depend on each other.
import assert from "node:assert/strict";
import { execFile, type ExecFileOptions } from "node:child_process";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface NixEnv {
  /** Root of everything this environment writes. */
  dir: string;
  /** Environment variables to run Nix commands with. */
  env: NodeJS.ProcessEnv;
  /** A fresh chroot store directory (logical /nix/store, physical <dir>/stores/<name>/nix/store). */
  store(name: string): string;
  /** Runs a Nix command; resolves with stdout, rejects with stderr in the message. */
  run(cmd: string, args: string[], options?: { input?: string | Uint8Array; encoding?: "buffer" | "utf8" }): Promise<string>;
  runBuffer(cmd: string, args: string[]): Promise<Buffer>;
  cleanup(): Promise<void>;
}

export async function makeNixEnv(extraConf = ""): Promise<NixEnv> {
  const dir = await mkdtemp(join(tmpdir(), "nixcas-nix-"));
  await mkdir(join(dir, "conf"), { recursive: true });
  await writeFile(
    join(dir, "conf", "nix.conf"),
    [
      "experimental-features = nix-command flakes ca-derivations",
      "substituters =",
      "build-users-group =",
      "sandbox = false",
      "narinfo-cache-negative-ttl = 0",
      "stalled-download-timeout = 20",
      extraConf,
      "",
    ].join("\n"),
  );
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NIX_CONF_DIR: join(dir, "conf"),
    XDG_CACHE_HOME: join(dir, "cache"),
    XDG_CONFIG_HOME: join(dir, "config"),
    XDG_DATA_HOME: join(dir, "data"),
    HOME: join(dir, "home"),
    // Commands run without --store (nix-store --dump, nix hash) would otherwise open /nix/var/nix/db.
    NIX_STATE_DIR: join(dir, "state"),
    NIX_LOG_DIR: join(dir, "log"),
    NIX_REMOTE: "",
  };
  const exec = (cmd: string, args: string[], opts: ExecFileOptions & { input?: string | Uint8Array }, asBuffer: boolean) =>
    new Promise<Buffer | string>((resolve, reject) => {
      const child = execFile(
        cmd,
        args,
        { env, maxBuffer: 1 << 30, encoding: asBuffer ? "buffer" : "utf8", ...opts },
        (err, stdout, stderr) => {
          if (err) reject(new Error(`${cmd} ${args.join(" ")} failed: ${err.message}\n${String(stderr)}`));
          else resolve(stdout as Buffer | string);
        },
      );
      if (opts.input !== undefined) child.stdin!.end(opts.input);
    });
  return {
    dir,
    env,
    store: (name) => join(dir, "stores", name),
    run: async (cmd, args, options = {}) => String(await exec(cmd, args, { input: options.input }, false)),
    runBuffer: async (cmd, args) => (await exec(cmd, args, {}, true)) as Buffer,
    cleanup: async () => {
      // Nix makes store paths read-only; make them writable again so they can be removed.
      await new Promise((r) => execFile("chmod", ["-R", "u+w", dir], () => r(undefined)));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Builds into `store` (a chroot store of `nix`) the derivation output `hello-<tag>`. It references
 * a `builtins.toFile` path `dep-<tag>.txt`, so it has a deriver, a reference and a build log
 * (`building hello-<tag>`). The expression is written to `dir`. Resolves with the output path.
 */
export async function buildHelloWithDep(nix: NixEnv, store: string, dir: string, tag: string): Promise<string> {
  const expr = join(dir, `drv-${tag}.nix`);
  await writeFile(
    expr,
    `let dep = builtins.toFile "dep-${tag}.txt" "dependency of ${tag}\\n"; in
derivation {
  name = "hello-${tag}";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "echo building hello-${tag}; /bin/mkdir $out; echo hello ${tag} > $out/greeting; echo \${dep} > $out/ref" ];
}
`,
  );
  // The builder runs the host's /bin/sh and /bin/mkdir: sandbox-paths keeps them visible should
  // the build run in a sandbox.
  const hostTools = ["--option", "sandbox-paths", "/bin /lib /lib64 /usr"];
  return (await nix.run("nix-build", ["--store", store, ...hostTools, expr, "--no-out-link"])).trim();
}

/**
 * Copies `paths` from the cache at `cacheUrl` into the fresh store `dst` of `fetcher` (its nix.conf
 * says which signatures it requires), checks them with `nix store verify`, and asserts that each
 * NAR equals the one in `source` of `uploader`, where it was pushed from.
 */
export async function copyBackAndCompare(opts: { fetcher: NixEnv; dst: string; cacheUrl: string; uploader: NixEnv; source: string; paths: string[] }): Promise<void> {
  const { fetcher, dst, cacheUrl, uploader, source, paths } = opts;
  await fetcher.run("nix", ["copy", "--from", cacheUrl, "--store", dst, ...paths]);
  await fetcher.run("nix", ["store", "verify", "--store", dst, "-r", ...paths]);
  for (const p of paths) {
    // `nix store dump-path` (nix-store --dump ignores --store's chroot in Nix 2.8).
    const mine = await uploader.runBuffer("nix", ["store", "dump-path", "--store", source, p]);
    const theirs = await fetcher.runBuffer("nix", ["store", "dump-path", "--store", dst, p]);
    assert.ok(mine.equals(theirs), `${p}: same NAR on both sides`);
  }
}
