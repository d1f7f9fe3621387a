// HTTP authentication and authorization of the gateway (services/gateway/auth.ts), against a real
// cluster: tokens made in KV `tokens` (shared/nats/token-store.ts), real HTTP. One public gateway
// with NIXCAS_PUSH_TOKEN (the cluster's), and beside it on the same NATS a private one
// (NIXCAS_PRIVATE=1) and one with a tiny upload rate.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { loadConfig } from "../../shared/config.ts";
import { createLogger } from "../../shared/log.ts";
import { TokenStore } from "../../shared/nats/token-store.ts";
import { encodeTokenRecord, generateToken, type Scope } from "../../shared/tokens.ts";
import { startGateway, type RunningGateway } from "../../services/gateway/gateway.ts";
import { startCluster, type Cluster } from "../helpers/cluster.ts";
import { gatewayMetric, http, preparePath, randomHashPart, uploadPath, type HttpAnswer, type PathUpload } from "../helpers/cache-http.ts";
import { narFromTree } from "../helpers/nar-trees.ts";
import { until } from "../helpers/pipeline.ts";

const ENV_TOKEN = "static-push-token-from-a-secret";

let cluster: Cluster;
let base: string;
let tokens: TokenStore;
const extraGateways: RunningGateway[] = [];
const extraLogs: string[] = [];
/** Every token made here: none may ever appear in a log line. */
const secrets: string[] = [ENV_TOKEN];

before(async () => {
  cluster = await startCluster({ env: { NIXCAS_PUSH_TOKEN: ENV_TOKEN } });
  base = cluster.url;
  tokens = new TokenStore(cluster.topology);
});
after(async () => {
  for (const g of extraGateways) await g.stop(500);
  await cluster?.stop();
});

async function newToken(scopes: Scope[], name: string | null = null): Promise<string> {
  const { token } = await tokens.create({ name, scopes, expiresAt: null });
  secrets.push(token);
  return token;
}

/** Another gateway on the cluster's NATS, with its own settings. */
async function gatewayWith(env: Record<string, string>): Promise<string> {
  const config = loadConfig({ NATS_URL: cluster.nats.url, NIXCAS_HTTP_HOST: "127.0.0.1", NIXCAS_HTTP_PORT: "0", NIXCAS_PUT_WAIT_SECONDS: "60", ...env });
  const logger = createLogger({}, { level: "debug", write: (line) => extraLogs.push(line) });
  const gateway = await startGateway({ topology: cluster.topology, config, logger, signingKey: async () => cluster.secretKey });
  extraGateways.push(gateway);
  return gateway.url;
}

const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });
/** What curl sends from netrc: any login, the token as password. */
const basic = (token: string, login = "nixcas") => ({ Authorization: `Basic ${Buffer.from(`${login}:${token}`).toString("base64")}` });

function realisation(): { path: string; body: (outPath: string, sigs?: string[]) => string; outPath: string } {
  const id = `sha256:${Buffer.from(randomHashPart()).toString("hex").slice(0, 64)}!out`;
  return {
    path: `/realisations/${id}.doi`,
    body: (outPath, sigs = []) => JSON.stringify({ dependentRealisations: {}, id, outPath, signatures: sigs }),
    outPath: `${randomHashPart()}-ca-out`,
  };
}

/** One PUT of every kind, for `headers`: the statuses by kind. */
async function putEveryKind(url: string, headers: Record<string, string>): Promise<Record<string, { status: number; text: string; up: PathUpload }>> {
  const up = preparePath({ nar: narFromTree(`every kind ${Math.random()}\n`) });
  const r = realisation();
  const requests: Record<string, { path: string; body: string | Uint8Array }> = {
    nar: { path: `/nar/${up.fileName}`, body: up.file },
    narinfo: { path: `/${up.hashPart}.narinfo`, body: up.narinfoText },
    log: { path: `/log/${up.hashPart}-x.drv`, body: "build log\n" },
    realisation: { path: r.path, body: r.body(r.outPath) },
    ls: { path: `/${up.hashPart}.ls`, body: JSON.stringify({ version: 1, root: { type: "regular", size: 1, narOffset: 1 } }) },
  };
  const out: Record<string, { status: number; text: string; up: PathUpload }> = {};
  for (const [kind, { path, body }] of Object.entries(requests)) {
    const answer = await http(`${url}${path}`, { method: "PUT", body, headers });
    out[kind] = { status: answer.status, text: answer.text, up };
  }
  return out;
}

describe("uploads", () => {
  test("anonymous PUTs are refused with 401 and WWW-Authenticate, and nothing is stored or advertised", async () => {
    const refused = await putEveryKind(base, {});
    for (const [kind, r] of Object.entries(refused)) {
      assert.equal(r.status, 401, `anonymous PUT ${kind}: ${r.text}`);
      assert.match(r.text, /needs a token with push scope/);
    }
    const answer = await http(`${base}/nix-cache-info`, { method: "PUT", body: "StoreDir: /nix/store\n" });
    assert.equal(answer.status, 401);
    assert.match(answer.headers.get("www-authenticate") ?? "", /^Basic realm="nixcas"/);
    const up = refused.nar!.up;
    assert.equal((await http(`${base}/${up.hashPart}.narinfo`)).status, 404);
    assert.equal((await http(`${base}/nar/${up.fileName}`, { method: "HEAD" })).status, 404);
    assert.equal((await http(`${base}/log/${up.hashPart}-x.drv`)).status, 404);
    assert.equal((await http(`${base}/${up.hashPart}.ls`)).status, 404);
    assert.equal(await cluster.topology.kv.staged.get(`nar.${up.fileName}`), null, "the NAR was not staged");
    assert.ok((await gatewayMetric(base, "nixcas_gateway_auth_refusals_total", { reason: "required" })) >= 6);
  });

  test("a push token uploads, as Bearer or as the Basic password with any login", async () => {
    const token = await newToken(["push"], "ci-runner");
    const viaBearer = preparePath({ nar: narFromTree("pushed with bearer\n") });
    const a = await uploadPath(base, viaBearer, token);
    assert.equal(a.nar.status, 204, a.nar.text);
    assert.equal(a.narinfo.status, 204, a.narinfo.text);
    assert.equal((await http(`${base}/${viaBearer.hashPart}.narinfo`)).status, 200);

    const viaBasic = preparePath({ nar: narFromTree("pushed with basic\n") });
    const nar = await http(`${base}/nar/${viaBasic.fileName}`, { method: "PUT", body: viaBasic.file, headers: basic(token, "anyone") });
    assert.equal(nar.status, 204, nar.text);
    const narinfo = await http(`${base}/${viaBasic.hashPart}.narinfo`, { method: "PUT", body: viaBasic.narinfoText, headers: basic(token) });
    assert.equal(narinfo.status, 204, narinfo.text);
    assert.equal((await http(`${base}/${viaBasic.hashPart}.narinfo`)).status, 200);
  });

  test("a pull-only token gets 403 (auth.scope) on every kind of PUT", async () => {
    const token = await newToken(["pull"], "reader");
    const answers = await putEveryKind(base, bearer(token));
    for (const [kind, r] of Object.entries(answers)) {
      assert.equal(r.status, 403, `PUT ${kind} with a pull token: ${r.text}`);
      assert.match(r.text, /^token [0-9a-f]{12} \(reader\) has scope pull; this needs push/);
    }
    assert.equal((await http(`${base}/${answers.nar!.up.hashPart}.narinfo`)).status, 404);
    assert.ok((await gatewayMetric(base, "nixcas_gateway_auth_refusals_total", { reason: "scope" })) >= 5);
  });

  test("NIXCAS_PUSH_TOKEN uploads; a wrong token or a made-up nixcas token is 401", async () => {
    const up = preparePath({ nar: narFromTree("pushed with the env token\n") });
    const r = await uploadPath(base, up, ENV_TOKEN);
    assert.equal(r.narinfo.status, 204, r.narinfo.text);
    const put = (headers: Record<string, string>) => http(`${base}/nix-cache-info`, { method: "PUT", body: "", headers });
    assert.equal((await put(basic(ENV_TOKEN))).status, 204);
    const wrong = await put(bearer(`${ENV_TOKEN}x`));
    assert.equal(wrong.status, 401);
    assert.match(wrong.text, /not a valid token/);
    const forged = generateToken({ name: null, scopes: ["admin"], expiresAt: null }).token;
    const unknown = await put(bearer(forged));
    assert.equal(unknown.status, 401);
    assert.match(unknown.text, /^token [0-9a-f]{12} is not valid \(unknown, revoked, or a wrong secret\)/);
    // Right id, wrong secret: the same answer.
    const real = await newToken(["push"]);
    const otherSecret = `${real.slice(0, 20)}${forged.slice(20)}`;
    const mismatch = await put(bearer(otherSecret));
    assert.equal(mismatch.status, 401);
    assert.match(mismatch.text, /is not valid \(unknown, revoked, or a wrong secret\)/);
    assert.equal((await put({ Authorization: "Digest abc" })).status, 401);
  });

  test("a revoked token is refused within seconds", async () => {
    const token = await newToken(["push"], "soon revoked");
    const put = () => http(`${base}/nix-cache-info`, { method: "PUT", body: "", headers: bearer(token) });
    assert.equal((await put()).status, 204);
    const revoked = await tokens.revoke(token.slice(7, 19));
    assert.equal(revoked?.name, "soon revoked");
    // The gateway's lookup cache holds a record for 1 s (LOOKUP_CACHE_MS): poll, with room to spare.
    await until("the revoked token to be refused", async () => (await put()).status === 401, 10_000, 100);
    assert.match((await put()).text, /is not valid \(unknown, revoked, or a wrong secret\)/);
    assert.equal(await tokens.revoke(token.slice(7, 19)), null, "revoking twice finds nothing");
  });

  test("an expired token is refused with auth.expired", async () => {
    const { token, record } = generateToken({ name: "old", scopes: ["push"], expiresAt: null });
    secrets.push(token);
    // Written directly: the store makes only tokens that expire in the future.
    await cluster.topology.kv.tokens.create(record.id, encodeTokenRecord({ ...record, expiresAt: new Date(Date.now() - 60_000).toISOString() }));
    const r = await http(`${base}/nix-cache-info`, { method: "PUT", body: "", headers: bearer(token) });
    assert.equal(r.status, 401);
    assert.match(r.text, /^token [0-9a-f]{12} \(old\) expired at .*nixcas token create/);
    assert.ok((await gatewayMetric(base, "nixcas_gateway_auth_refusals_total", { reason: "expired" })) >= 1);
  });

  test("a public cache reads without credentials, and a bad token in them does not matter", async () => {
    const up = preparePath({ nar: narFromTree("public read\n") });
    assert.equal((await uploadPath(base, up, ENV_TOKEN)).narinfo.status, 204);
    assert.equal((await http(`${base}/${up.hashPart}.narinfo`)).status, 200);
    assert.equal((await http(`${base}/nix-cache-info`, { headers: bearer("nixcas_000000000000_nonsense") })).status, 200);
    assert.equal((await http(`${base}/${up.hashPart}.narinfo`, { headers: basic("expired-or-whatever") })).status, 200);
  });
});

describe("logs and realisations: kept once stored, unless admin", () => {
  test("a push token cannot replace a log (409); the same log again is fine; admin replaces it", async () => {
    const push = await newToken(["push"]);
    const admin = await newToken(["admin"], "operator");
    const path = `/log/${randomHashPart()}-hello.drv`;
    const put = (body: string, token: string) => http(`${base}${path}`, { method: "PUT", body, headers: bearer(token) });
    assert.equal((await put("first build\n", push)).status, 204);
    const replace = await put("rewritten history\n", push);
    assert.equal(replace.status, 409);
    assert.match(replace.text, /already stored; replacing a build log needs a token with admin scope/);
    assert.equal((await http(`${base}${path}`)).text, "first build\n");
    assert.equal((await put("first build\n", push)).status, 204, "the same log again");
    assert.equal((await put("rebuilt\n", admin)).status, 204);
    assert.equal((await http(`${base}${path}`)).text, "rebuilt\n");
  });

  test("a push token keeps a stored realisation (204, unchanged); admin replaces it; another outPath is 409 for all", async () => {
    const push = await newToken(["push"]);
    const admin = await newToken(["admin"]);
    const r = realisation();
    const put = (body: string, token: string) => http(`${base}${r.path}`, { method: "PUT", body, headers: bearer(token) });
    const first = r.body(r.outPath);
    assert.equal((await put(first, push)).status, 204);
    assert.equal((await put(r.body(r.outPath, ["k:c2ln"]), push)).status, 204);
    assert.equal((await http(`${base}${r.path}`)).text, first, "kept as first stored");
    assert.equal((await put(r.body(`${randomHashPart()}-other`), push)).status, 409);
    assert.equal((await put(r.body(`${randomHashPart()}-other`), admin)).status, 409);
    const signed = r.body(r.outPath, ["k:c2ln"]);
    assert.equal((await put(signed, admin)).status, 204);
    assert.equal((await http(`${base}${r.path}`)).text, signed);
  });
});

describe("a private cache (NIXCAS_PRIVATE=1)", () => {
  let privateUrl: string;
  let up: PathUpload;

  before(async () => {
    privateUrl = await gatewayWith({ NIXCAS_PRIVATE: "1", NIXCAS_PUSH_TOKEN: ENV_TOKEN });
    up = preparePath({ nar: narFromTree("private data\n") });
    const r = await uploadPath(privateUrl, up, ENV_TOKEN);
    assert.equal(r.narinfo.status, 204, r.narinfo.text);
  });

  test("anonymous reads of narinfo, NAR and nix-cache-info are refused with 401", async () => {
    for (const path of [`/${up.hashPart}.narinfo`, `/nar/${up.narHash32}.nar`, `/nar/${up.narHash32}.nar.zst`, "/nix-cache-info", `/${up.hashPart}.ls`]) {
      for (const method of ["GET", "HEAD"]) {
        const r = await http(`${privateUrl}${path}`, { method });
        assert.equal(r.status, 401, `${method} ${path}`);
        assert.match(r.headers.get("www-authenticate") ?? "", /^Basic/);
      }
    }
    assert.match((await http(`${privateUrl}/nix-cache-info`)).text, /this cache is private: reads need a token with pull scope/);
    // Health and metrics stay open (probes and scrapers carry no tokens).
    assert.equal((await http(`${privateUrl}/healthz`)).status, 200);
    assert.equal((await http(`${privateUrl}/metrics`)).status, 200);
  });

  test("a pull token (as netrc sends it) reads; a revoked one does not", async () => {
    const pull = await newToken(["pull"], "laptop");
    assert.equal((await http(`${privateUrl}/nix-cache-info`, { headers: basic(pull) })).status, 200);
    const narinfo = await http(`${privateUrl}/${up.hashPart}.narinfo`, { headers: basic(pull) });
    assert.equal(narinfo.status, 200, narinfo.text);
    const nar = await http(`${privateUrl}/nar/${up.narHash32}.nar`, { headers: bearer(pull) });
    assert.equal(nar.status, 200);
    assert.equal(nar.body.length, up.nar.length);
    assert.equal((await http(`${privateUrl}/${up.hashPart}.narinfo`, { headers: basic(ENV_TOKEN) })).status, 200, "push implies pull");
    assert.equal((await http(`${privateUrl}/nix-cache-info`, { method: "PUT", body: "", headers: basic(pull) })).status, 403);
    await tokens.revoke(pull);
    await until("the revoked pull token to be refused", async () => (await http(`${privateUrl}/nix-cache-info`, { headers: basic(pull) })).status === 401, 10_000, 100);
  });
});

describe("upload rate limit", () => {
  test("over the burst: 429 with Retry-After and the limit named; per token; 400 for Nix < 2.34", async () => {
    const url = await gatewayWith({ NIXCAS_UPLOAD_RATE: "1", NIXCAS_UPLOAD_BURST: "3", NIXCAS_PUSH_TOKEN: ENV_TOKEN });
    const token = await newToken(["push"], "busy");
    const put = (t: string, headers: Record<string, string> = {}) => http(`${url}/nix-cache-info`, { method: "PUT", body: "", headers: { ...bearer(t), ...headers } });
    const statuses: number[] = [];
    let limited: HttpAnswer | null = null;
    for (let i = 0; i < 6 && limited === null; i++) {
      const r = await put(token);
      statuses.push(r.status);
      if (r.status !== 204) limited = r;
    }
    // The burst is 3; a 4th may pass if a refill landed in between, never more than one.
    assert.ok(statuses.filter((s) => s === 204).length >= 3 && statuses.length <= 5, `statuses ${statuses.join(",")}`);
    assert.ok(limited !== null);
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers.get("retry-after")) >= 1);
    assert.match(limited.text, /^too many uploads from token [0-9a-f]{12} \(busy\): the limit is 1\/s with bursts of 3 \(NIXCAS_UPLOAD_RATE, NIXCAS_UPLOAD_BURST\); retry in \d+ s/);
    const oldNix = await put(token, { "User-Agent": "curl/7.85.0 Nix/2.8.0" });
    assert.equal(oldNix.status, 400, "Nix < 2.34 would retry a 429 with an empty body and hang");
    assert.ok(Number(oldNix.headers.get("retry-after")) >= 1);
    assert.equal((await put(ENV_TOKEN)).status, 204, "another token has its own bucket");
    assert.equal((await http(`${url}/nix-cache-info`, { headers: bearer(token) })).status, 200, "reads are not limited");
  });
});

test("no token ever appears in a log line", () => {
  const lines = [...cluster.logs.map((l) => JSON.stringify(l)), ...extraLogs];
  assert.ok(lines.length > 0);
  for (const secret of secrets) {
    const leaked = lines.find((l) => l.includes(secret) || l.includes(secret.slice(20)));
    assert.equal(leaked, undefined, `a log line holds a token: ${leaked?.slice(0, 300)}`);
  }
});
