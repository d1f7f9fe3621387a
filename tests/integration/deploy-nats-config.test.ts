// deploy/nats/nats.conf as a deployment uses it: with the auth.conf and creds of `nixcas
// nats-auth init`, a real nats-server loads it, JetStream works for the admin (the whole
// topology is created), anonymous clients are refused, and credentials minted later with
// `nixcas creds --auth-dir` connect without touching the server. Only the port and the store
// dir are changed (the port by a command-line flag, which wins over the file).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { connectNats } from "../../shared/nats/connect.ts";
import { launchNatsServer, type NatsServerProcess } from "../../shared/nats/local-server.ts";
import { NATS_ROLES } from "../../shared/nats/roles.ts";
import { ensureTopology, STREAMS } from "../../shared/nats/topology.ts";
import { NATS_SERVER_BINARY } from "../helpers/nats-server.ts";

const run = promisify(execFile);
const CLI = new URL("../../cli/nixcas.ts", import.meta.url).pathname;
const DEPLOY_CONF = new URL("../../deploy/nats/nats.conf", import.meta.url).pathname;

let dir: string;
let server: NatsServerProcess;
let url: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixcas-deploy-nats-"));
  // The store dir of the file is the container's; nats-server refuses -sd beside a store_dir.
  const conf = (await readFile(DEPLOY_CONF, "utf8")).replace("store_dir: /data/jetstream", `store_dir: "${join(dir, "jetstream")}"`);
  assert.notEqual(conf, await readFile(DEPLOY_CONF, "utf8"), "the file has the container's store dir");
  await writeFile(join(dir, "nats.conf"), conf);
  const init = await run(process.execPath, [CLI, "nats-auth", "init", "--out", dir]);
  assert.match(init.stdout, /server include: .*auth\.conf/);
  server = await launchNatsServer({ binary: NATS_SERVER_BINARY, storeDir: null, args: ["-c", join(dir, "nats.conf")] });
  url = `nats://127.0.0.1:${server.port}`;
});

after(async () => {
  await server?.terminate("SIGTERM", 5_000);
  await rm(dir, { recursive: true, force: true });
});

test("nats-server accepts the file as it is (nats-server -t)", async () => {
  const checked = await run(NATS_SERVER_BINARY, ["-t", "-c", join(dir, "nats.conf")]);
  assert.match(checked.stdout + checked.stderr, /configuration file .* is valid/);
});

test("nats-auth init wrote private keys and a creds file per role", async () => {
  for (const file of ["operator.nk", "account.nk", "system.nk", ...NATS_ROLES.map((r) => `creds/${r}.creds`)]) {
    assert.equal((await stat(join(dir, file))).mode & 0o777, 0o600, file);
  }
  assert.doesNotMatch(await readFile(join(dir, "auth.conf"), "utf8"), /(^|[^A-Z2-7])S[OAU][A-Z2-7]{56}([^A-Z2-7]|$)/m, "no seed (58 base32 characters starting SO/SA/SU) in the server's include");
});

test("an anonymous client is refused", async () => {
  await assert.rejects(connectNats({ servers: [url], name: "anonymous", timeoutMs: 5_000 }), /Authorization Violation/);
});

test("JetStream works for the admin: the whole topology is created", async () => {
  const admin = await connectNats({ servers: [url], name: "admin", credsFile: join(dir, "creds", "admin.creds") });
  try {
    const topology = await ensureTopology(admin);
    assert.equal((await topology.jsm.streams.info(STREAMS.blocks)).config.discard_new_per_subject, true);
    assert.equal(await topology.kv.paths.get("nothing"), null);
  } finally {
    await admin.close();
  }
});

test("credentials minted later with `nixcas creds --auth-dir` connect, with their role's rights only", async () => {
  const minted = await run(process.execPath, [CLI, "creds", "pusher", "--auth-dir", dir, "--name", "ci-runner"]);
  assert.match(minted.stdout, /-----BEGIN NATS USER JWT-----/);
  const file = join(dir, "ci-runner.creds");
  await writeFile(file, minted.stdout, { mode: 0o600 });
  const pusher = await connectNats({ servers: [url], name: "ci-runner", credsFile: file });
  try {
    await assert.rejects(pusher.request(`$JS.API.STREAM.DELETE.${STREAMS.blocks}`, "", { timeout: 5_000 }), /Permissions Violation for Publish to "\$JS.API.STREAM.DELETE.BLOCKS"/);
  } finally {
    await pusher.close();
  }
  await assert.rejects(run(process.execPath, [CLI, "creds", "superuser", "--auth-dir", dir]), (err: { code: number; stderr: string }) => err.code === 2 && /unknown role 'superuser'/.test(err.stderr));
  await assert.rejects(run(process.execPath, [CLI, "creds", "pusher", "--auth-dir", join(dir, "nowhere")]), (err: { code: number; stderr: string }) => err.code === 1 && /no NATS auth keys in/.test(err.stderr));
});

test("init again keeps the keys: credentials given out stay valid after the server restarts with the new auth.conf", async () => {
  const before = await readFile(join(dir, "account.nk"), "utf8");
  const pusherCreds = await readFile(join(dir, "creds", "pusher.creds"), "utf8");
  await run(process.execPath, [CLI, "nats-auth", "init", "--out", dir]);
  assert.equal(await readFile(join(dir, "account.nk"), "utf8"), before);
  assert.equal(await readFile(join(dir, "creds", "pusher.creds"), "utf8"), pusherCreds, "a current creds file is not re-issued");
  await server.terminate("SIGTERM", 5_000);
  server = await launchNatsServer({ binary: NATS_SERVER_BINARY, storeDir: null, port: server.port, args: ["-c", join(dir, "nats.conf")] });
  const minted = await connectNats({ servers: [url], name: "ci-runner", credsFile: join(dir, "ci-runner.creds") });
  await minted.close();
});
