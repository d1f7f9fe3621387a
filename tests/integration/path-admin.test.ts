// "Who uploaded this" and "first upload wins" (issue 7), against a real cluster (nats-server,
// ingester, chunker, indexer, two gateways): the uploader recorded with each path — the token's
// label for HTTP uploads, the NATS user for `nixcas push` — and shown by `nixcas path info`; an
// admin's deletion (`DELETE /<hash>.narinfo`, `nixcas path delete`) through the indexer, seen by
// every gateway, after which the honest upload that was refused with index.conflict goes in.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { RAW_CODEC, DAG_CBOR_CODEC, cidForBytes } from "../../shared/cid.ts";
import { NixcasError } from "../../shared/errors.ts";
import { formatHash, sha256Hash } from "../../shared/hash.ts";
import { silentLogger } from "../../shared/log.ts";
import { ManifestBuilder } from "../../shared/manifest.ts";
import { parseNarInfo } from "../../shared/narinfo.ts";
import { BlockStore } from "../../shared/nats/block-store.ts";
import { Catalog } from "../../shared/nats/catalog.ts";
import { INDEX_ADMIN_SUBJECTS, INDEX_QUERY_SUBJECTS, type DeletePathReply, type PathDeletedEvent, type PathInfoJson } from "../../shared/nats/index-protocol.ts";
import { ingestClientFor } from "../../shared/nats/ingest-client.ts";
import { generateNatsAuthKeys, issueCreds } from "../../shared/nats/nats-auth.ts";
import { requestService } from "../../shared/nats/service.ts";
import { SUBJECTS } from "../../shared/nats/subjects.ts";
import { TokenStore } from "../../shared/nats/token-store.ts";
import { STREAMS } from "../../shared/nats/topology.ts";
import { SERVICES } from "../../services/registry.ts";
import type { RunningGateway } from "../../services/gateway/gateway.ts";
import { natsUserLabel } from "../../cli/nats-user.ts";
import { submitPath } from "../../cli/push/upload-path.ts";
import { authHeaders, http, preparePath, randomHashPart, uploadPath } from "../helpers/cache-http.ts";
import { startCluster, type Cluster } from "../helpers/cluster.ts";
import { narFromTree } from "../helpers/nar-trees.ts";
import { startNatsServer } from "../helpers/nats-server.ts";

const CLI = new URL("../../cli/nixcas.ts", import.meta.url).pathname;

let cluster: Cluster;
/** A second gateway on the same NATS: what another replica sees. */
let other: RunningGateway;
let catalog: Catalog;
const tokens: Record<"ci" | "stranger" | "ops", { token: string; id: string }> = {} as never;

before(async () => {
  cluster = await startCluster();
  other = await SERVICES.gateway({ topology: cluster.topology, config: cluster.config, logger: silentLogger, signingKey: async () => cluster.secretKey });
  catalog = new Catalog(cluster.topology);
  const store = new TokenStore(cluster.topology);
  for (const [key, name, scope] of [["ci", "ci-runner", "push"], ["stranger", "stranger", "push"], ["ops", "ops", "admin"]] as const) {
    const made = await store.create({ name, scopes: [scope], expiresAt: null });
    tokens[key] = { token: made.token, id: made.record.id };
  }
});

after(async () => {
  await other?.stop(1_000);
  await cluster?.stop();
});

async function lookup(hashPart: string): Promise<PathInfoJson> {
  return requestService<PathInfoJson>(cluster.nc, INDEX_QUERY_SUBJECTS.lookup, { hashPart }, { timeoutMs: 10_000 });
}

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `nixcas <args>` as a user runs it: a child process talking to the test's NATS server. */
function nixcas(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? "", NATS_URL: cluster.nats.url, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** GET narinfo until `done` says so: another gateway may see a change a moment later. */
async function eventually(url: string, done: (status: number) => boolean): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { status } = await http(url);
    if (done(status) || Date.now() > deadline) return status;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const nar = (text: string) => narFromTree({ file: text });

describe("the uploader is recorded with each path", () => {
  test("HTTP: the token's label; `nixcas path info` shows it (text and --json)", async () => {
    const up = preparePath({ nar: nar("uploaded over HTTP\n"), name: "http-upload", compression: "xz" });
    const r = await uploadPath(cluster.url, up, tokens.ci.token);
    assert.equal(r.narinfo.status, 204, r.narinfo.text);
    const label = `token ${tokens.ci.id} (ci-runner)`;
    const info = await lookup(up.hashPart);
    assert.equal(info.uploader, label);
    assert.equal(info.storePath, up.storePath);
    assert.ok(Number.isSafeInteger(info.registered) && info.registered > 0);
    // FileHash/FileSize as the narinfo serves them.
    const served = parseNarInfo((await http(`${cluster.url}/${up.hashPart}.narinfo`)).text);
    assert.equal(info.fileHash, formatHash(served.fileHash!, "nix32"));
    assert.equal(info.fileSize, served.fileSize);

    const text = await nixcas(["path", "info", up.storePath]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`^Store path: +${up.storePath}$`, "m"));
    assert.match(text.stdout, new RegExp(`^Uploader: +${label.replace(/[()]/g, "\\$&")}$`, "m"));
    assert.match(text.stdout, new RegExp(`^NAR hash: +sha256:${up.narHash32}$`, "m"));
    assert.match(text.stdout, new RegExp(`^Added: +${new Date(info.registered).toISOString().replace(/\./g, "\\.")}$`, "m"));
    assert.match(text.stdout, new RegExp(`^File size: +${served.fileSize}$`, "m"));
    const json = await nixcas(["path", "info", up.hashPart, "--json"]);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), info);

    // The same NAR again from someone else changes nothing: the first uploader stays.
    assert.equal((await uploadPath(cluster.url, up, tokens.stranger.token)).narinfo.status, 204);
    assert.deepEqual(await lookup(up.hashPart), info);
  });

  test("NATS push: `nats <user>` from the user JWT of its creds", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nixcas-path-admin-"));
    try {
      const credsFile = join(dir, "pusher.creds");
      await writeFile(credsFile, await issueCreds(generateNatsAuthKeys(), "pusher", { label: "laptop" }));
      const label = await natsUserLabel(credsFile);
      assert.equal(label, "nats pusher:laptop");
      assert.equal(await natsUserLabel(null), "nats", "no creds (token or no auth): just nats");
      assert.equal(await natsUserLabel(join(dir, "missing.creds")), "nats");

      // What `nixcas push` does once the blocks are out: submitPath with its label.
      const data = nar("pushed over NATS\n".repeat(1000));
      const blocks = new BlockStore(cluster.topology);
      const builder = new ManifestBuilder();
      const chunk = cidForBytes(data, RAW_CODEC);
      await blocks.putBytes(data, RAW_CODEC);
      for (const node of builder.add({ cid: chunk, size: data.length })) await blocks.putBytes(node.bytes, DAG_CBOR_CODEC);
      const digest = new Uint8Array(createHash("sha256").update(data).digest());
      const { root, blocks: nodes } = builder.finish(digest, data.length);
      for (const node of nodes) await blocks.putBytes(node.bytes, DAG_CBOR_CODEC);
      const hashPart = randomHashPart();
      const storePath = `/nix/store/${hashPart}-pushed`;
      const status = await submitPath(
        {
          info: { storePath, hashPart, baseName: `${hashPart}-pushed`, narHash: sha256Hash(digest), narSize: data.length, references: [], deriver: null, ca: null, sigs: [] },
          manifest: root,
          chunks: 1,
        },
        ingestClientFor(cluster.topology),
        30_000,
        label,
      );
      assert.equal(status.state, "done", JSON.stringify(status));
      assert.equal((await lookup(hashPart)).uploader, "nats pusher:laptop");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("first upload wins; an admin deletes the bad one; the honest one goes in", () => {
  const hashPart = randomHashPart();
  const bad = preparePath({ nar: nar("a stranger's bytes\n"), hashPart, name: "contested", compression: "xz" });
  const honest = preparePath({ nar: nar("the honest build\n"), hashPart, name: "contested", compression: "zstd" });
  const narinfoUrl = (base: string) => `${base}/${hashPart}.narinfo`;

  test("the stranger's upload is first; the honest one is refused with index.conflict", async () => {
    assert.equal((await uploadPath(cluster.url, bad, tokens.stranger.token)).narinfo.status, 204);
    const refused = await uploadPath(cluster.url, honest, tokens.ci.token);
    assert.equal(refused.narinfo.status, 400);
    assert.match(refused.narinfo.text, /index\.conflict: .* is already in the cache with NAR hash sha256:/);
    for (const base of [cluster.url, other.url]) {
      const served = await http(narinfoUrl(base));
      assert.equal(served.status, 200);
      assert.equal(formatHash(parseNarInfo(served.text).narHash, "nix32"), `sha256:${bad.narHash32}`, "the first upload is kept");
    }
    assert.equal((await lookup(hashPart)).uploader, `token ${tokens.stranger.id} (stranger)`, "who to blame");
  });

  test("only an admin token may delete: none 401, push 403", async () => {
    assert.equal((await http(narinfoUrl(cluster.url), { method: "DELETE" })).status, 401);
    const push = await http(narinfoUrl(cluster.url), { method: "DELETE", headers: authHeaders(tokens.ci.token) });
    assert.equal(push.status, 403, push.text);
    assert.equal((await http(narinfoUrl(cluster.url))).status, 200, "nothing was deleted");
  });

  test("DELETE with an admin token: 204, gone from this gateway at once and from the other soon, event published", async () => {
    const nars = await catalog.getNar(bad.narHash32);
    assert.ok(nars !== null);
    assert.ok((await catalog.getListing(hashPart)) !== null, "the pipeline built a listing");

    const r = await http(narinfoUrl(cluster.url), { method: "DELETE", headers: authHeaders(tokens.ops.token) });
    assert.equal(r.status, 204, r.text);
    assert.equal((await http(narinfoUrl(cluster.url))).status, 404, "the gateway that deleted sees it at once");
    assert.equal(await eventually(narinfoUrl(other.url), (s) => s === 404), 404, "another gateway sees it too");
    assert.equal((await http(`${cluster.url}/${hashPart}.ls`)).status, 404, "the listing went with it");
    await assert.rejects(lookup(hashPart), (err: unknown) => err instanceof NixcasError && err.code === "index.not-found");
    // Content-addressed records stay for GC: they may be shared with other paths.
    assert.ok((await catalog.getNar(bad.narHash32))!.manifest.equals(nars.manifest));

    const event = await cluster.topology.jsm.streams.getMessage(STREAMS.events, { last_by_subj: SUBJECTS.pathDeleted(hashPart) });
    assert.ok(event !== null, "a path-deleted event is in EVENTS");
    const body = JSON.parse(new TextDecoder().decode(event.data)) as PathDeletedEvent;
    assert.equal(body.hashPart, hashPart);
    assert.equal(body.storePath, bad.storePath);
    assert.equal(body.by, `token ${tokens.ops.id} (ops)`);
    assert.equal(typeof body.cid, "string");

    const again = await http(narinfoUrl(cluster.url), { method: "DELETE", headers: authHeaders(tokens.ops.token) });
    assert.equal(again.status, 404, "absent now");
  });

  test("the honest upload now goes in, recorded as its uploader's", async () => {
    const r = await uploadPath(cluster.url, honest, tokens.ci.token);
    assert.equal(r.narinfo.status, 204, r.narinfo.text);
    for (const base of [cluster.url, other.url]) {
      assert.equal(await eventually(narinfoUrl(base), (s) => s === 200), 200);
      assert.equal(formatHash(parseNarInfo((await http(narinfoUrl(base))).text).narHash, "nix32"), `sha256:${honest.narHash32}`);
    }
    const info = await lookup(hashPart);
    assert.equal(info.narHash, `sha256:${honest.narHash32}`);
    assert.equal(info.uploader, `token ${tokens.ci.id} (ci-runner)`);
  });
});

describe("deleting over NATS", () => {
  test("`nixcas path delete`: removes the path, records who asked; absent paths are not found", async () => {
    const up = preparePath({ nar: nar("deleted over NATS\n"), name: "nats-delete", compression: "none" });
    assert.equal((await uploadPath(cluster.url, up, tokens.ci.token)).narinfo.status, 204);

    const done = await nixcas(["path", "delete", up.storePath]);
    assert.equal(done.code, 0, done.stderr);
    assert.equal(done.stdout, `deleted ${up.storePath}\n`);
    assert.equal((await http(`${cluster.url}/${up.hashPart}.narinfo`)).status, 404);
    const event = await cluster.topology.jsm.streams.getMessage(STREAMS.events, { last_by_subj: SUBJECTS.pathDeleted(up.hashPart) });
    assert.ok(event !== null, "a path-deleted event is in EVENTS");
    assert.equal((JSON.parse(new TextDecoder().decode(event.data)) as PathDeletedEvent).by, "nats", "no creds: the label is just nats");

    for (const args of [["path", "delete", up.hashPart], ["path", "info", `${up.hashPart}-nats-delete`]]) {
      const absent = await nixcas(args);
      assert.equal(absent.code, 1, args.join(" "));
      assert.equal(absent.stderr, `nixcas: no store path with hash part ${up.hashPart} is in the cache\n`);
    }
    const usage = await nixcas(["path", "delete", "/gnu/store/not-a-path"]);
    assert.equal(usage.code, 1);
    assert.match(usage.stderr, /^nixcas: "\/gnu\/store\/not-a-path" is neither a store path in \/nix\/store nor a hash part/);
    assert.equal((await nixcas(["path", "delete"])).code, 2);
  });

  test("pusher credentials cannot send the deletion: the NATS server refuses it", async () => {
    // A server with the roles' permissions (shared/nats/permissions.ts), as `nixcas up` runs it.
    const server = await startNatsServer({ jwtAuth: true });
    try {
      const run = await nixcas(["path", "delete", randomHashPart()], { NATS_URL: server.url, NATS_CREDS: server.auth!.credsFile("pusher") });
      assert.equal(run.code, 1);
      // (The connection's own log line about the violation comes first.)
      assert.ok(run.stderr.endsWith("\nnixcas: deleting a path needs the admin NATS credentials (NATS_CREDS); these may not send nixcas.index.admin.delete-path\n"), run.stderr);
    } finally {
      await server.stop();
    }
  });

  test("the request is checked: hash part and a printable `by`", async () => {
    const ask = (body: unknown) => requestService<DeletePathReply>(cluster.nc, INDEX_ADMIN_SUBJECTS.deletePath, body, { timeoutMs: 10_000 });
    const refused = async (body: unknown, message: RegExp) =>
      assert.rejects(ask(body), (err: unknown) => err instanceof NixcasError && err.code === "index.request" && message.test(err.message));
    await refused({ hashPart: "nope", by: "x" }, /hashPart "nope" is not a store path hash part/);
    await refused({ hashPart: randomHashPart() }, /field "by" is missing/);
    await refused({ hashPart: randomHashPart(), by: "ops\n" }, /by has the unprintable character U\+000A/);
    await refused({ hashPart: randomHashPart(), by: "ops", force: true }, /unknown field "force"/);
    await assert.rejects(ask({ hashPart: randomHashPart(), by: "ops" }), (err: unknown) => err instanceof NixcasError && err.code === "index.not-found");
  });
});
