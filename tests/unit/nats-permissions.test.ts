// The NATS roles' permissions as data (shared/nats/permissions.ts) and the credentials made from
// them (shared/nats/nats-auth.ts): what no role but admin may do, what the pusher may not touch,
// inboxes kept apart, and creds that fit the server's limits. Against a real server:
// tests/integration/nats-roles.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decode, type User } from "@nats-io/jwt";
import { credsAreCurrent, describeCreds, generateNatsAuthKeys, issueCreds, renderServerAuthConfig } from "../../shared/nats/nats-auth.ts";
import { inboxPrefixOf, NATS_ROLES, permissionsOf, type NatsRole } from "../../shared/nats/permissions.ts";
import { roleOfCreds, userJwtOfCreds } from "../../shared/nats/roles.ts";
import { KV_BUCKETS, STREAMS } from "../../shared/nats/topology.ts";

/** NATS subject matching: `*` one token, `>` one or more trailing tokens. */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (i >= s.length || (p[i] !== "*" && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

const mayPublish = (role: NatsRole, subject: string) => permissionsOf(role).publish.some((p) => matches(p, subject));
const maySubscribe = (role: NatsRole, subject: string) => permissionsOf(role).subscribe.some((p) => matches(p, subject));
const NOT_ADMIN = NATS_ROLES.filter((r) => r !== "admin");
const EVERY_STREAM = [...Object.values(STREAMS), ...KV_BUCKETS.map((b) => `KV_${b}`), "OBJ_staging", "ANY_OTHER"];

test("the matcher follows NATS wildcards", () => {
  assert.ok(matches("a.*.c", "a.b.c"));
  assert.ok(!matches("a.*", "a.b.c"));
  assert.ok(matches("a.>", "a.b.c"));
  assert.ok(!matches("a.>", "a"));
  assert.ok(matches(">", "x"));
});

test("no role but admin can create, update or delete any stream, or purge one other than the staging store", () => {
  for (const role of NOT_ADMIN) {
    for (const stream of EVERY_STREAM) {
      for (const op of ["CREATE", "UPDATE", "DELETE"]) assert.ok(!mayPublish(role, `$JS.API.STREAM.${op}.${stream}`), `${role} ${op} ${stream}`);
      if (stream !== "OBJ_staging") assert.ok(!mayPublish(role, `$JS.API.STREAM.PURGE.${stream}`), `${role} PURGE ${stream}`);
    }
    assert.ok(!mayPublish(role, "$JS.API.ACCOUNT.PURGE"), role);
  }
  for (const op of ["CREATE", "UPDATE", "DELETE", "PURGE"]) assert.ok(mayPublish("admin", `$JS.API.STREAM.${op}.${STREAMS.blocks}`));
});

test("a pusher publishes only its requests: no blocks, no JetStream, no KV; subscribes only to its inbox", () => {
  const hex = "ab".repeat(32);
  assert.ok(!mayPublish("pusher", `CID.sha256.ab.${hex}`));
  for (const subject of ["$JS.API.INFO", "$JS.API.STREAM.INFO.BLOCKS", "$JS.API.DIRECT.GET.KV_uploads.$KV.uploads.x", "$KV.tokens.x", "$O.staging.C.x", "nixcas.index.admin.delete-path", "nixcas.ingest.nar", "nixcas.work.index"]) {
    assert.ok(!mayPublish("pusher", subject), subject);
  }
  for (const subject of ["nixcas.index.has-paths", "nixcas.index.missing-chunks", "nixcas.index.lookup", "nixcas.ingest.manifest", "nixcas.ingest.block"]) {
    assert.ok(mayPublish("pusher", subject), subject);
  }
  assert.deepEqual(permissionsOf("pusher").subscribe, ["_INBOX_pusher.>"]);
  assert.equal(permissionsOf("pusher").responds, false);
});

test("every role listens on its own inbox only (admin on anything)", () => {
  for (const role of NOT_ADMIN) {
    assert.ok(maySubscribe(role, `${inboxPrefixOf(role)}.abc.1`), role);
    assert.ok(!maySubscribe(role, "_INBOX.abc.1"), role);
    for (const other of NATS_ROLES.filter((r) => r !== role)) assert.ok(!maySubscribe(role, `${inboxPrefixOf(other)}.abc.1`), `${role} on ${other}'s inbox`);
    // Services answer through the response permission, never a publish right on inboxes.
    assert.ok(!permissionsOf(role).publish.some((p) => p.startsWith("_INBOX")), role);
  }
});

test("who may write which catalog bucket", () => {
  const writers = (bucket: string) => NATS_ROLES.filter((r) => mayPublish(r, `$KV.${bucket}.key`));
  assert.deepEqual(writers("paths"), ["indexer", "admin"]);
  assert.deepEqual(writers("nars"), ["indexer", "admin"]);
  assert.deepEqual(writers("tokens"), ["admin"]);
  assert.deepEqual(writers("uploads"), ["ingester", "chunker", "indexer", "admin"]);
  assert.deepEqual(
    NATS_ROLES.filter((r) => mayPublish(r, "$JS.API.DIRECT.GET.KV_tokens.$KV.tokens.id")),
    ["gateway", "admin"],
  );
});

test("block writers may delete a squatted block; nobody else may delete from BLOCKS", () => {
  const writers = NATS_ROLES.filter((r) => mayPublish(r, `CID.sha256.ab.${"ab".repeat(32)}`));
  // The tierer: GC stores the live blocks of a repacked pack back; tiering deletes moved blocks.
  assert.deepEqual(writers, ["ingester", "chunker", "indexer", "gateway", "tierer", "admin"]);
  assert.deepEqual(NATS_ROLES.filter((r) => mayPublish(r, "$JS.API.STREAM.MSG.DELETE.BLOCKS")), writers);
});

test("the tierer: owns the cold-tier buckets, reads the catalog, never writes the catalog or tokens", () => {
  const writers = (bucket: string) => NATS_ROLES.filter((r) => mayPublish(r, `$KV.${bucket}.key`));
  for (const bucket of ["cold", "packs", "access", "pins", "tierer"]) assert.deepEqual(writers(bucket), ["tierer", "admin"], bucket);
  for (const subject of ["$KV.paths.x", "$KV.nars.x", "$KV.tokens.x", "$JS.API.DIRECT.GET.KV_tokens.$KV.tokens.x", "$JS.API.CONSUMER.CREATE.KV_tokens.x", "nixcas.ingest.nar", "nixcas.work.index", "$JS.API.CONSUMER.MSG.NEXT.INDEX.indexer"]) {
    assert.ok(!mayPublish("tierer", subject), subject);
  }
  for (const subject of ["$JS.API.DIRECT.GET.KV_paths.$KV.paths.x", "$JS.API.CONSUMER.CREATE.BLOCKS.oc_1", "$JS.API.CONSUMER.MSG.NEXT.KV_access.oc_1", "nixcas.index.admin.delete-path"]) {
    assert.ok(mayPublish("tierer", subject), subject);
  }
  for (const subject of ["nixcas.tier.run", "nixcas.tier.access", "nixcas.events.path.added.x"]) assert.ok(maySubscribe("tierer", subject), subject);
  // The gateway reads cold blocks, reports access and asks for restores; it cannot write the tierer's records.
  for (const subject of ["nixcas.tier.access", "nixcas.tier.restore", "$JS.API.DIRECT.GET.KV_cold.$KV.cold.x", "$JS.API.DIRECT.GET.KV_packs.$KV.packs.x"]) assert.ok(mayPublish("gateway", subject), subject);
  for (const subject of ["$KV.cold.x", "$KV.access.x", "nixcas.tier.run", "nixcas.tier.gc"]) assert.ok(!mayPublish("gateway", subject), subject);
});

test("work queues: each worker pulls from its own consumers only", () => {
  assert.ok(mayPublish("chunker", "$JS.API.CONSUMER.MSG.NEXT.INGEST.chunker-small"));
  assert.ok(mayPublish("chunker", "$JS.API.CONSUMER.CREATE.INGEST.chunker-large.nixcas.work.ingest.large"));
  assert.ok(!mayPublish("chunker", "$JS.API.CONSUMER.MSG.NEXT.INDEX.indexer"));
  assert.ok(mayPublish("indexer", "$JS.API.CONSUMER.MSG.NEXT.INDEX.indexer"));
  assert.ok(mayPublish("indexer", "$JS.ACK.ADVISORIES.indexer-max-deliveries.1.2.3.4.5.6"));
  for (const role of ["ingester", "gateway", "pusher"] as const) {
    assert.ok(!mayPublish(role, "$JS.API.CONSUMER.MSG.NEXT.INGEST.chunker-small"), role);
    assert.ok(!mayPublish(role, "$JS.API.CONSUMER.MSG.NEXT.INDEX.indexer"), role);
  }
});

test("creds name their role, carry its permissions, and fit the server's 4 KiB control line", async () => {
  const keys = generateNatsAuthKeys();
  for (const role of NATS_ROLES) {
    const creds = await issueCreds(keys, role, role === "pusher" ? { label: "ci" } : {});
    assert.equal(roleOfCreds(creds), role);
    const jwt = userJwtOfCreds(creds)!;
    const claims = decode<User>(jwt);
    assert.equal(claims.iss, keys.account.getPublicKey());
    assert.deepEqual(claims.nats.pub?.allow, [...permissionsOf(role).publish]);
    assert.deepEqual(claims.nats.sub?.allow, [...permissionsOf(role).subscribe]);
    assert.equal(claims.nats.resp !== undefined, permissionsOf(role).responds);
    // CONNECT carries the JWT plus a signature, name and options: nats-server refuses a control
    // line over max_control_line (4096 by default) and the connection times out.
    assert.ok(jwt.length + 600 < 4096, `${role}: a ${jwt.length}-byte JWT leaves too little room in CONNECT`);
    assert.ok(credsAreCurrent(creds, keys.account, role));
    assert.ok(!credsAreCurrent(creds, generateNatsAuthKeys().account, role), "another account's creds are not current");
  }
  assert.equal(describeCreds(await issueCreds(keys, "pusher", { label: "ci" })).name, "pusher:ci");
  assert.ok(!credsAreCurrent(await issueCreds(keys, "gateway"), keys.account, "chunker"), "other permissions are not current");
});

test("the server config trusts the operator and preloads both accounts", async () => {
  const keys = generateNatsAuthKeys();
  const conf = await renderServerAuthConfig(keys);
  assert.match(conf, /^operator: ey/m);
  assert.match(conf, /^resolver: MEMORY$/m);
  assert.match(conf, new RegExp(`^system_account: ${keys.system.getPublicKey()}$`, "m"));
  const account = new RegExp(`^  ${keys.account.getPublicKey()}: (\\S+)$`, "m").exec(conf)?.[1];
  assert.ok(account);
  const claims = decode<{ limits: Record<string, unknown> }>(account);
  assert.equal(claims.iss, keys.operator.getPublicKey());
  assert.equal(claims.name, "NIXCAS");
  assert.equal(claims.nats.limits?.disk_storage, -1, "JetStream on, without a limit");
  assert.match(conf, new RegExp(`^  ${keys.system.getPublicKey()}: ey`, "m"));
});
