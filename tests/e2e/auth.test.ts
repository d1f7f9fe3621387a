// Authority by default (issue 7), with the real Nix client against `nixcas up` as a user starts
// it: nobody writes without a token — the attacker's fake `bash` is refused and nothing is
// advertised —, the netrc `nixcas up` writes on first start is all Nix needs to push, a
// pull-only token cannot push, a revoked token stops working within seconds, a private cache
// refuses anonymous reads and serves a pull token, and the local nats-server refuses anonymous
// NATS clients.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { connect } from "@nats-io/transport-node";
import { writeTree } from "../helpers/nar-trees.ts";
import { makeNixEnv, type NixEnv } from "../helpers/nix.ts";
import { until } from "../helpers/pipeline.ts";
import { cleanUpProcesses, gatewayOf, NIXCAS, newDataDir, startUp, type Up } from "../helpers/up-process.ts";

let uploader: NixEnv;
let source: string;
let work: string;

before(async () => {
  uploader = await makeNixEnv();
  source = uploader.store("src");
  work = join(uploader.dir, "work");
  await mkdir(work, { recursive: true });
});

after(async () => {
  await cleanUpProcesses();
  await uploader?.cleanup();
});

/**
 * Runs `nixcas <args>` next to a running `nixcas up` (same data dir, no NATS_URL: it finds the
 * local server and its admin creds), or as a remote machine would with `env`: its stdout.
 */
function nixcas(dataDir: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [NIXCAS, ...args],
      { env: { ...uploader.env, NATS_URL: "", NATS_CREDS: "", NIXCAS_DATA_DIR: dataDir, NIXCAS_LOG_LEVEL: "warn", ...env } },
      (err, stdout, stderr) => (err ? reject(new Error(`nixcas ${args.join(" ")} failed: ${err.message}\n${stderr}`)) : resolve(stdout)),
    );
  });
}

async function createToken(dataDir: string, args: string[]): Promise<string> {
  const out = (await nixcas(dataDir, ["token", "create", ...args])).trimEnd().split("\n");
  const token = out.at(-1)!;
  assert.match(token, /^nixcas_\S+$/, "the token is the last line of stdout");
  return token;
}

/** A netrc for the gateway at `url` with `token` as the password (what Nix sends as Basic auth). */
async function netrcFor(url: string, token: string, name: string): Promise<string> {
  const file = join(work, `${name}.netrc`);
  await writeFile(file, `machine ${new URL(url).hostname} login nixcas password ${token}\n`, { mode: 0o600 });
  return file;
}

/** A store path with `bin/<name>` printing `says`, added to the uploader's source store. */
async function addTool(name: string, tag: string, says: string): Promise<string> {
  const dir = join(work, `${name}-${tag}`);
  await writeTree(dir, { dir: { bin: { dir: { [name.split("-")[0]!]: { file: `#!/bin/sh\necho ${says}\n`, executable: true } } } } });
  return (await uploader.run("nix-store", ["--store", source, "--add", dir])).trim();
}

const hashPartOf = (storePath: string) => storePath.slice("/nix/store/".length, "/nix/store/".length + 32);

async function statusOf(url: string, init: RequestInit = {}): Promise<number> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
  await res.arrayBuffer();
  return res.status;
}

const basic = (token: string) => ({ Authorization: `Basic ${Buffer.from(`nixcas:${token}`).toString("base64")}` });

function pushWith(netrc: string | null, url: string, path: string): Promise<string> {
  return uploader.run("nix", ["copy", "--store", source, "--to", url, ...(netrc ? ["--option", "netrc-file", netrc] : []), path]);
}

describe("a public cache started with nixcas up", () => {
  let up: Up;
  let url: string;
  let netrc: string;

  before(async () => {
    up = startUp(await newDataDir());
    url = await gatewayOf(up);
    // Its netrc (made on first start: tests/e2e/up-netrc.test.ts) is all a pushing Nix needs.
    netrc = /netrc-file = (\S+)/.exec(up.stdout())![1]!;
  });

  test("an anonymous nix copy --to is refused and nothing is advertised", async () => {
    const fake = await addTool("bash-5.2-p15", "fake", "pwned");
    await assert.rejects(pushWith(null, url, fake), /401|Unauthorized|unauthori[sz]ed/i);
    assert.equal(await statusOf(`${url}/${hashPartOf(fake)}.narinfo`), 404);
  });

  test("the generated netrc pushes; a reader with only the cache key gets the path", async () => {
    const tool = await addTool("hello-tool", "admin", "hello");
    await pushWith(netrc, url, tool);
    const key = /public key: +(\S+)/.exec(up.stdout())![1]!;
    const reader = await makeNixEnv(`require-sigs = true\ntrusted-public-keys = ${key}\n`);
    try {
      const dst = reader.store("dst");
      await reader.run("nix", ["copy", "--from", url, "--store", dst, tool]);
      assert.equal((await readFile(join(dst, tool.slice(1), "bin", "hello"), "utf8")).trim(), "#!/bin/sh\necho hello");
    } finally {
      await reader.cleanup();
    }
  });

  test("a pull-only token cannot push", async () => {
    const pullNetrc = await netrcFor(url, await createToken(up.dataDir, ["--pull", "--name", "reader"]), "pull");
    const tool = await addTool("pull-tool", "pull", "nope");
    await assert.rejects(pushWith(pullNetrc, url, tool), /403|Forbidden/i);
    assert.equal(await statusOf(`${url}/${hashPartOf(tool)}.narinfo`), 404);
  });

  test("a revoked push token stops within seconds", async () => {
    const token = await createToken(up.dataDir, ["--push", "--name", "ci"]);
    const pushNetrc = await netrcFor(url, token, "push");
    await pushWith(pushNetrc, url, await addTool("before-revoke", "ci", "ok"));
    const listed = await nixcas(up.dataDir, ["token", "list"]);
    assert.match(listed, /\bci\b/);
    assert.ok(!listed.includes(token.split("_").at(-1)!), "token list never shows secrets");

    await nixcas(up.dataDir, ["token", "revoke", token]);
    const revokedAt = Date.now();
    await until("the revoked token to be refused", async () => (await statusOf(`${url}/nix-cache-info`, { method: "PUT", headers: basic(token), body: "StoreDir: /nix/store\n" })) === 401, 10_000, 100);
    const tookMs = Date.now() - revokedAt;
    assert.ok(tookMs < 10_000, `refused after ${tookMs} ms`);
    await assert.rejects(pushWith(pushNetrc, url, await addTool("after-revoke", "ci", "no")), /401|Unauthorized/i);
  });

  test("a remote pusher with `nixcas creds pusher` pushes over NATS; the path records who", async () => {
    const creds = join(work, "ci.creds");
    await writeFile(creds, await nixcas(up.dataDir, ["creds", "pusher", "--name", "ci-runner"]), { mode: 0o600 });
    const natsUrl = /NATS: +(nats:\/\/\S+)/.exec(up.stdout())![1]!;
    const tool = await addTool("pushed-tool", "nats", "pushed");
    // Another machine: no data dir of its own, only the server's URL and its creds.
    const remote = { NATS_URL: natsUrl, NATS_CREDS: creds, NIXCAS_DATA_DIR: join(work, "no-data-dir") };
    await nixcas(up.dataDir, ["push", "--store", source, tool], remote);
    assert.equal(await statusOf(`${url}/${hashPartOf(tool)}.narinfo`), 200);
    assert.match(await nixcas(up.dataDir, ["path", "info", tool]), /nats pusher:ci-runner/);
  });

  test("the local nats-server refuses anonymous clients", async () => {
    const natsUrl = /NATS: +(nats:\/\/\S+)/.exec(up.stdout())![1]!;
    await assert.rejects(connect({ servers: natsUrl, reconnect: false, timeout: 5_000 }), /Authorization Violation|authorization/i);
  });
});

describe("a private cache (NIXCAS_PRIVATE=1)", () => {
  test("refuses anonymous reads and serves a pull token", async () => {
    const up = startUp(await newDataDir(), { NIXCAS_PRIVATE: "1" });
    const url = await gatewayOf(up);
    const adminNetrc = /netrc-file = (\S+)/.exec(up.stdout())![1]!;
    const tool = await addTool("private-tool", "private", "secret");
    await pushWith(adminNetrc, url, tool);

    assert.equal(await statusOf(`${url}/${hashPartOf(tool)}.narinfo`), 401);
    assert.equal(await statusOf(`${url}/nix-cache-info`), 401);
    const key = /public key: +(\S+)/.exec(up.stdout())![1]!;
    const reader = await makeNixEnv(`require-sigs = true\ntrusted-public-keys = ${key}\n`);
    try {
      await assert.rejects(reader.run("nix", ["copy", "--from", url, "--store", reader.store("anon"), tool]));
      const pullNetrc = await netrcFor(url, await createToken(up.dataDir, ["--pull", "--name", "reader"]), "private-pull");
      const dst = reader.store("dst");
      await reader.run("nix", ["copy", "--from", url, "--store", dst, "--option", "netrc-file", pullNetrc, tool]);
      assert.ok(existsSync(join(dst, tool.slice(1), "bin", "private")));
    } finally {
      await reader.cleanup();
    }
  });
});
