import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { configMarkdown, loadConfig, parseByteSize } from "../../shared/config.ts";
import { ConfigError } from "../../shared/errors.ts";

test("defaults give a working single-machine configuration", () => {
  const config = loadConfig({});
  assert.equal(config.nats.servers, null);
  assert.equal(config.http.port, 8080);
  assert.deepEqual(config.chunking, { minSize: 16384, avgSize: 65536, maxSize: 262144, zstdLevel: 3 });
  assert.equal(config.storeDir, "/nix/store");
});

test("sizes accept suffixes and lists are split", () => {
  assert.equal(parseByteSize("64KiB"), 65536);
  assert.equal(parseByteSize("1g"), 1024 ** 3);
  assert.equal(parseByteSize("12 parsecs"), null);
  const config = loadConfig({ NATS_URL: "nats://a:4222,nats://b:4222", NIXCAS_TRUSTED_UPLOADER_KEYS: " k1:AA  k2:BB " });
  assert.deepEqual(config.nats.servers, ["nats://a:4222", "nats://b:4222"]);
  assert.deepEqual(config.trustedUploaderKeys, ["k1:AA", "k2:BB"]);
});

test("every problem is reported at once, naming the variable", () => {
  assert.throws(
    () => loadConfig({ NIXCAS_HTTP_PORT: "eighty", NIXCAS_CHUNK_MIN: "1MiB", NIXCAS_LOG_LEVEL: "loud", NATS_URL: "http://x y" }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      for (const name of ["NIXCAS_HTTP_PORT", "NIXCAS_CHUNK_MIN < NIXCAS_CHUNK_AVG", "NIXCAS_LOG_LEVEL", "NATS_URL"]) {
        assert.match(err.message, new RegExp(name));
      }
      return true;
    },
  );
});

test("the README's configuration table is the one the code generates", async () => {
  const readme = await readFile(new URL("../../README.md", import.meta.url), "utf8");
  assert.ok(readme.includes(configMarkdown()), "README.md is stale: regenerate it with `nixcas config --markdown`");
});

test("services announce the package's version", async () => {
  const { NIXCAS_VERSION } = await import("../../shared/version.ts");
  const pkg = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  assert.equal(NIXCAS_VERSION, pkg.version);
});
