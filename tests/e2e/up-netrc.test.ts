// `nixcas up`'s admin token (cli/admin-netrc.ts): made on the first start into
// `<NIXCAS_DATA_DIR>/netrc` (0600, the lines curl reads for Nix), printed in the banner with the
// nix.conf line, reused by later starts, reported when it no longer works; the banner says when
// uploads are open. Real `nixcas up` processes over real HTTP.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { generateToken } from "../../shared/tokens.ts";
import { cleanUpProcesses, gatewayOf, newDataDir, startUp, type Up } from "../helpers/up-process.ts";

after(cleanUpProcesses);

const put = (url: string, headers: Record<string, string> = {}) =>
  fetch(`${url}/nix-cache-info`, { method: "PUT", body: "", headers }).then(async (r) => ({ status: r.status, text: await r.text() }));

async function stop(up: Up): Promise<void> {
  up.child.kill("SIGTERM");
  await up.exited;
}

test("the first start makes an admin token and its netrc; uploads need it; a restart reuses it", async () => {
  const dataDir = await newDataDir();
  const file = join(dataDir, "netrc");
  const first = startUp(dataDir);
  const url = await gatewayOf(first);
  const banner = first.stdout();
  const id = new RegExp(`netrc: +${file} \\(new admin token ([0-9a-f]{12});`).exec(banner)?.[1];
  assert.ok(id, `banner names the new token:\n${banner}`);
  assert.ok(banner.includes(`  netrc-file = ${file}\n`), "the nix.conf line");
  assert.ok(!banner.includes("uploads:"), "uploads are not open");
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  const text = await readFile(file, "utf8");
  const lines = text.trimEnd().split("\n");
  assert.deepEqual(
    lines.map((l) => l.replace(/password \S+$/, "password …")),
    ["machine 127.0.0.1 login nixcas password …", "machine localhost login nixcas password …"],
  );
  const token = /password (\S+)$/.exec(lines[0]!)![1]!;
  assert.match(token, new RegExp(`^nixcas_${id}_`));
  assert.ok(!banner.includes(token) && !first.stderr().includes(token), "the token is in the file only");

  assert.equal((await put(url)).status, 401, "anonymous uploads are refused");
  const basic = { Authorization: `Basic ${Buffer.from(`nixcas:${token}`).toString("base64")}` };
  assert.equal((await put(url, basic)).status, 204, "the netrc's credentials upload");
  await stop(first);

  const second = startUp(dataDir);
  const url2 = await gatewayOf(second);
  assert.match(second.stdout(), new RegExp(`netrc: +${file} \\(admin token ${id}\\)`));
  assert.equal(await readFile(file, "utf8"), text, "the file is left as it is");
  assert.equal((await put(url2, basic)).status, 204);
  await stop(second);
});

test("a netrc whose token is unknown (revoked) is reported, with what to do", async () => {
  const dataDir = await newDataDir();
  const { token, record } = generateToken({ name: null, scopes: ["admin"], expiresAt: null });
  await writeFile(join(dataDir, "netrc"), `machine 127.0.0.1 login nixcas password ${token}\n`, { mode: 0o600 });
  const up = startUp(dataDir);
  await gatewayOf(up);
  const banner = up.stdout();
  assert.match(banner, new RegExp(`is unusable: its token ${record.id} was revoked\\. Remove the file and restart nixcas up for a new admin token`));
  assert.ok(!banner.includes("netrc-file ="), "no nix.conf line for a token that does not work");
  await stop(up);
});

test("NIXCAS_ALLOW_ANONYMOUS_PUSH=1: the banner says uploads are open, and they are", async () => {
  const up = startUp(await newDataDir(), { NIXCAS_ALLOW_ANONYMOUS_PUSH: "1" });
  const url = await gatewayOf(up);
  assert.match(up.stdout(), /uploads: +OPEN to anyone who reaches the gateway/);
  assert.ok(up.logs().some((l) => l.level === "warn" && /uploads are open to anyone/.test(String(l.msg))));
  assert.equal((await put(url)).status, 204);
  await stop(up);
});
