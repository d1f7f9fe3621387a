// The gateway's request target parsing (`parseTarget`, services/gateway/gateway.ts) and URL
// table (`matchRoute`, services/gateway/routes.ts), without a server: which route and handler a
// request reaches, what its parameters are, and which requests are 400, 404 or 405 before any
// handler runs. Nix sends names unencoded (`:`, `!`, `+`, `=` as raw bytes,
// docs/nix-protocol.md §1), so those must reach the handlers exactly as sent.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseTarget } from "../../services/gateway/gateway.ts";
import { HttpError } from "../../services/gateway/http-errors.ts";
import { ROUTES, matchRoute, type RouteMatch } from "../../services/gateway/routes.ts";

const HASH = "mmhy4gyimnl2vkfi4z575rd3g2ymw14q";
const NAR_HASH = "1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi";
const DRV = "p92h32l8czl187xfm5pwc8939as56xji-ia-out.drv";
const REALISATION_ID = "sha256:0fe36bf3247be31d6656a4298881d3bd85b385114ea8fe25ecb88b29b0d234b3!out";

function found(match: RouteMatch): Extract<RouteMatch, { kind: "found" }> {
  assert.equal(match.kind, "found", JSON.stringify(match.kind === "not-found" ? match : { kind: match.kind, route: match.route.name }));
  return match as Extract<RouteMatch, { kind: "found" }>;
}

function route(name: string) {
  const r = ROUTES.find((candidate) => candidate.name === name);
  assert.ok(r, `route ${name} exists`);
  return r;
}

// ---- matchRoute ----------------------------------------------------------------------------

test("every binary-cache path reaches its route with the name as parameter", () => {
  const cases: Array<[path: string, name: string, params: string[]]> = [
    ["/nix-cache-info", "cache-info", []],
    [`/${HASH}.narinfo`, "narinfo", [HASH]],
    [`/nar/${NAR_HASH}.nar.zst`, "nar", [`${NAR_HASH}.nar.zst`]],
    [`/nar/${NAR_HASH}.nar`, "nar", [`${NAR_HASH}.nar`]],
    [`/nar/${NAR_HASH}.nar.xz`, "nar", [`${NAR_HASH}.nar.xz`]],
    [`/${HASH}.ls`, "listing", [HASH]],
    [`/log/${DRV}`, "log", [DRV]],
    [`/realisations/${REALISATION_ID}.doi`, "realisation", [REALISATION_ID]],
    [`/build-trace-v2/${DRV}/out.doi`, "build-trace", [DRV, "out"]],
    ["/debuginfo/0123456789abcdef0123456789abcdef01234567.debug", "debuginfo", ["0123456789abcdef0123456789abcdef01234567.debug"]],
    ["/ipfs/bafkreib5fbf6vveh4duugpay5off6zj4zyei63jhnkzqj675jz37go5teu", "ipfs", ["bafkreib5fbf6vveh4duugpay5off6zj4zyei63jhnkzqj675jz37go5teu"]],
    ["/metrics", "metrics", []],
  ];
  for (const [path, name, params] of cases) {
    const m = found(matchRoute("GET", path));
    assert.equal(m.route.name, name, path);
    assert.deepEqual(m.params, params, path);
    assert.equal(m.head, false, path);
    assert.equal(m.handler, route(name).GET, path);
  }
});

test("HEAD runs the GET handler and is marked as HEAD", () => {
  for (const path of ["/nix-cache-info", `/${HASH}.narinfo`, `/nar/${NAR_HASH}.nar.xz`, "/debuginfo/ab.debug"]) {
    const m = found(matchRoute("HEAD", path));
    assert.equal(m.head, true, path);
    assert.equal(m.handler, m.route.GET, path);
  }
});

test("PUT reaches the upload handler of every route that takes uploads", () => {
  const uploads: Array<[path: string, name: string]> = [
    ["/nix-cache-info", "cache-info"],
    [`/${HASH}.narinfo`, "narinfo"],
    [`/nar/${NAR_HASH}.nar.xz`, "nar"],
    [`/${HASH}.ls`, "listing"],
    [`/log/${DRV}`, "log"],
    [`/realisations/${REALISATION_ID}.doi`, "realisation"],
    [`/build-trace-v2/${DRV}/out.doi`, "build-trace"],
    ["/debuginfo/ab.debug", "debuginfo"],
  ];
  for (const [path, name] of uploads) {
    const m = found(matchRoute("PUT", path));
    assert.equal(m.route.name, name, path);
    assert.equal(m.head, false, path);
    assert.ok(m.handler !== undefined && m.handler === route(name).PUT, path);
    assert.notEqual(m.handler, route(name).GET, path);
  }
});

test("DELETE reaches only the narinfo route (an admin's removal of a path)", () => {
  const m = found(matchRoute("DELETE", `/${HASH}.narinfo`));
  assert.equal(m.route.name, "narinfo");
  assert.deepEqual(m.params, [HASH]);
  assert.ok(m.handler !== undefined && m.handler === route("narinfo").DELETE);
  assert.deepEqual(ROUTES.filter((r) => r.DELETE !== undefined).map((r) => r.name), ["narinfo"]);
});

test("a method a route lacks is 405 with the methods it has in Allow", () => {
  const cases: Array<[method: string, path: string, name: string, allow: string]> = [
    ["PUT", "/ipfs/bafkqaaa", "ipfs", "GET, HEAD"],
    ["PUT", "/metrics", "metrics", "GET, HEAD"],
    ["POST", `/${HASH}.narinfo`, "narinfo", "GET, HEAD, PUT, DELETE"],
    ["DELETE", `/nar/${NAR_HASH}.nar`, "nar", "GET, HEAD, PUT"],
    ["POST", "/nix-cache-info", "cache-info", "GET, HEAD, PUT"],
    ["OPTIONS", `/log/${DRV}`, "log", "GET, HEAD, PUT"],
    ["PATCH", `/build-trace-v2/${DRV}/out.doi`, "build-trace", "GET, HEAD, PUT"],
  ];
  for (const [method, path, name, allow] of cases) {
    const m = matchRoute(method, path);
    assert.equal(m.kind, "method-not-allowed", `${method} ${path}`);
    assert.ok(m.kind === "method-not-allowed");
    assert.equal(m.route.name, name);
    assert.equal(m.allow, allow, `${method} ${path}`);
  }
});

test("paths outside the table are not found, whatever the method", () => {
  for (const path of [
    "/",
    "",
    "/nix-cache-info/",
    "/nix-cache-info.txt",
    "/.narinfo", // an empty name
    `/sub/${HASH}.narinfo`,
    `/${HASH}.narinfo/`,
    "/nar/",
    "/nar/a/b.nar",
    "/nar",
    "/log/",
    `/log/a/${DRV}`,
    "/realisations/.doi",
    `/realisations/${REALISATION_ID}`,
    `/build-trace-v2/${DRV}.doi`,
    `/build-trace-v2/${DRV}/x/out.doi`,
    "/ipfs/",
    "/metrics/x",
    "//nix-cache-info",
  ]) {
    for (const method of ["GET", "HEAD", "PUT", "POST"]) {
      assert.deepEqual(matchRoute(method, path), { kind: "not-found" }, `${method} ${JSON.stringify(path)}`);
    }
  }
});

test("a narinfo or listing name under nar/ is a NAR name, not a narinfo", () => {
  const m = found(matchRoute("GET", `/nar/${HASH}.narinfo`));
  assert.equal(m.route.name, "nar");
  assert.deepEqual(m.params, [`${HASH}.narinfo`]);
  const ls = found(matchRoute("GET", `/nar/${HASH}.ls`));
  assert.equal(ls.route.name, "nar");
});

test("route names are unique (they label metrics and logs)", () => {
  const names = ROUTES.map((r) => r.name);
  assert.equal(new Set(names).size, names.length);
});

// ---- parseTarget ---------------------------------------------------------------------------

function assertBadTarget(target: string, message: RegExp): void {
  assert.throws(
    () => parseTarget(target),
    (err: unknown) => err instanceof HttpError && err.status === 400 && err.code === "http.target" && message.test(err.message),
    JSON.stringify(target),
  );
}

test("origin-form: the path as sent, the query apart", () => {
  const t = parseTarget(`/${HASH}.narinfo`);
  assert.equal(t.path, `/${HASH}.narinfo`);
  assert.equal([...t.query].length, 0);

  const q = parseTarget("/ipfs/bafkqaaa?format=car&dag-scope=all");
  assert.equal(q.path, "/ipfs/bafkqaaa");
  assert.equal(q.query.get("format"), "car");
  assert.equal(q.query.get("dag-scope"), "all");

  // A narinfo URL may carry a query (Nix passes it through); the path stays the NAR name.
  const nar = parseTarget(`/nar/${NAR_HASH}.nar.xz?token=abc`);
  assert.equal(nar.path, `/nar/${NAR_HASH}.nar.xz`);
  assert.equal(nar.query.get("token"), "abc");
});

test("the raw bytes Nix sends unencoded stay as they are (`:`, `!`, `+`, `=`)", () => {
  assert.equal(parseTarget(`/realisations/${REALISATION_ID}.doi`).path, `/realisations/${REALISATION_ID}.doi`);
  assert.equal(parseTarget("/log/abc-gtk+3-3.24.drv").path, "/log/abc-gtk+3-3.24.drv"); // `+` is not a space in a path
  assert.equal(parseTarget("/log/abc-x=1.drv").path, "/log/abc-x=1.drv");
});

test("percent-encoding is decoded before routing", () => {
  assert.equal(parseTarget("/realisations/sha256%3Aab%21out.doi").path, "/realisations/sha256:ab!out.doi");
  assert.equal(parseTarget("/log/a%20b.drv").path, "/log/a b.drv");
  assert.equal(parseTarget("/log/%C3%A9.drv").path, "/log/é.drv");
  // An encoded slash becomes a separator, so it cannot smuggle a `/` into a name parameter.
  const slash = parseTarget("/nar/a%2Fb.nar");
  assert.equal(slash.path, "/nar/a/b.nar");
  assert.deepEqual(matchRoute("GET", slash.path), { kind: "not-found" });
});

test("absolute-form (through a proxy): its path and query", () => {
  const t = parseTarget(`http://cache.example:8080/${HASH}.narinfo?x=1`);
  assert.equal(t.path, `/${HASH}.narinfo`);
  assert.equal(t.query.get("x"), "1");
  assert.equal(parseTarget("https://cache.example/nix-cache-info").path, "/nix-cache-info");
});

test("unusable targets are 400 with the reason", () => {
  assertBadTarget("*", /invalid request target "\*"/); // asterisk-form (OPTIONS *)
  assertBadTarget("/%zz.narinfo", /invalid percent-encoding in "\/%zz.narinfo"/);
  assertBadTarget("/log/%C3", /invalid percent-encoding/); // a cut UTF-8 sequence
  assertBadTarget("/log/%", /invalid percent-encoding/);
  assertBadTarget("/log/a%00.drv", /NUL in request path/);
});

test("a long bad target is quoted only in part", () => {
  const long = "/%zz" + "a".repeat(5000);
  assert.throws(
    () => parseTarget(long),
    (err: unknown) => err instanceof HttpError && err.status === 400 && err.message.length < 200,
  );
});
