// `nixcas token create | list | revoke` (cli/commands/token.ts) as a user runs it: a child process
// against a real nats-server with the JWT roles `nixcas up` uses, with the admin's creds. The
// gateway's role reads the records; a pusher's role cannot make tokens.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { connectNats } from "../../shared/nats/connect.ts";
import { TokenStore } from "../../shared/nats/token-store.ts";
import { ensureTopology, openTopology } from "../../shared/nats/topology.ts";
import { parseToken, secretMatches } from "../../shared/tokens.ts";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.ts";

const CLI = new URL("../../cli/nixcas.ts", import.meta.url).pathname;

let server: NatsServer;
let admin: NatsConnection;
const connections: NatsConnection[] = [];

before(async () => {
  server = await startNatsServer({ jwtAuth: true });
  admin = await connectNats({ servers: [server.url], name: "token-cli-test", credsFile: server.auth!.credsFile("admin") });
  connections.push(admin);
  await ensureTopology(admin);
});
after(async () => {
  for (const nc of connections) await nc.close();
  await server?.stop();
});

function nixcas(args: string[], role: "admin" | "pusher" = "admin"): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, "token", ...args], {
      env: { ...process.env, NATS_URL: server.url, NATS_CREDS: server.auth!.credsFile(role), NIXCAS_LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString("utf8")));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

test("create prints the token alone on stdout; list shows it without a secret; revoke takes the token or its id", async () => {
  const made = await nixcas(["create", "--push", "--name", "ci runner", "--ttl", "30d"]);
  assert.equal(made.code, 0, made.stderr);
  const lines = made.stdout.split("\n");
  assert.deepEqual(lines.slice(1), [""], "one line on stdout");
  const token = lines[0]!;
  const { id, secret } = parseToken(token);
  assert.match(made.stderr, new RegExp(`^created token ${id} \\(ci runner\\) with scope pull, push, expires 20`));
  assert.ok(!made.stderr.includes(token.slice(20)), "the secret is not on stderr");

  // What a gateway sees, through its own role.
  const gatewayNc = await connectNats({ servers: [server.url], name: "gateway", credsFile: server.auth!.credsFile("gateway") });
  connections.push(gatewayNc);
  const record = await new TokenStore(await openTopology(gatewayNc)).lookup(id);
  assert.ok(record !== null && secretMatches(record, secret));
  assert.deepEqual(record.scopes, ["pull", "push"]);
  const days = (Date.parse(record.expiresAt!) - Date.parse(record.createdAt)) / 86_400_000;
  assert.equal(days, 30);

  const reader = await nixcas(["create"]);
  assert.equal(reader.code, 0, reader.stderr);
  const readerId = parseToken(reader.stdout.trim()).id;

  const table = await nixcas(["list"]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^ID +NAME +SCOPES +CREATED +EXPIRES\n/);
  assert.match(table.stdout, new RegExp(`\\n${id}  ci runner +pull,push +\\S+  ${record.expiresAt}\\n`));
  assert.match(table.stdout, new RegExp(`\\n${readerId}  - +pull +\\S+  never\\n`));
  const json = await nixcas(["list", "--json"]);
  const rows = JSON.parse(json.stdout) as Array<Record<string, unknown>>;
  assert.deepEqual(rows.find((r) => r.id === id), { id, name: "ci runner", scopes: ["pull", "push"], createdAt: record.createdAt, expiresAt: record.expiresAt, expired: false });
  for (const out of [table.stdout, json.stdout]) {
    assert.ok(!out.includes(token.slice(20)) && !out.includes(record.secretSha256), "no secret, no hash");
  }

  const revoked = await nixcas(["revoke", token]);
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.match(revoked.stderr, new RegExp(`^revoked token ${id} \\(ci runner\\)`));
  const again = await nixcas(["revoke", id]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, new RegExp(`there is no token ${id}`));
  assert.equal((await nixcas(["revoke", readerId])).code, 0);
  assert.deepEqual(JSON.parse((await nixcas(["list", "--json"])).stdout), []);
});

test("usage errors exit 2 and say what is wrong", async () => {
  const cases: Array<[string[], RegExp]> = [
    [["create", "--ttl", "5y"], /invalid TTL "5y"/],
    [["create", "--root"], /unknown option '--root'/],
    [["create", "--name"], /--name needs a value/],
    [["revoke"], /expected exactly one token or token id/],
    [["revoke", "nixcas_0123456789ab_short"], /the secret must be 32 bytes/],
    [["list", "extra"], /unexpected argument 'extra'/],
    [["frobnicate"], /unknown sub-command 'frobnicate'/],
  ];
  for (const [args, message] of cases) {
    const r = await nixcas(args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
});

test("a pusher's NATS role cannot make tokens", async () => {
  const r = await nixcas(["create", "--admin"], "pusher");
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^nixcas: .*Permissions Violation/m);
  assert.equal(r.stdout, "", "no token");
  assert.deepEqual(await new TokenStore(await openTopology(admin)).list(), []);
});
