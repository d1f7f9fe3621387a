// `nixcas path`'s pure parts (cli/commands/path.ts): how a path argument names a hash part, and
// the record as people read it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { formatPathInfo, hashPartOf } from "../../cli/commands/path.ts";
import { NixcasError } from "../../shared/errors.ts";
import type { PathInfoJson } from "../../shared/nats/index-protocol.ts";

const HASH = "sbpcwb0mmk2nkhp7ddw5gn8275bay7ps";

test("a store path, base name or hash part names the hash part", () => {
  for (const arg of [`/nix/store/${HASH}-plain`, `${HASH}-plain`, HASH]) assert.equal(hashPartOf(arg, "/nix/store"), HASH, arg);
  assert.equal(hashPartOf(`/gnu/store/${HASH}-plain`, "/gnu/store"), HASH);
  for (const arg of [`/gnu/store/${HASH}-plain`, "plain", `${HASH.slice(1)}-x`, `/nix/store/${HASH}-plain/bin/sh`]) {
    assert.throws(() => hashPartOf(arg, "/nix/store"), (e: unknown) =>
      e instanceof NixcasError && e.code === "path.name" && e.message.startsWith(`${JSON.stringify(arg)} is neither a store path in /nix/store nor a hash part`), arg);
  }
});

test("path info for people: one field per line, lists one item per line, absent values said", () => {
  const info: PathInfoJson = {
    cid: "bafyreib5fbf6vveh4duugpay5off6zj4zyei63jhnkzqj675jz37go5teu",
    storePath: `/nix/store/${HASH}-plain`,
    narHash: "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
    narSize: 120,
    references: ["0pvxky59ddjlcfiday8npilrxhnf09wc-glibc-2.35", `${HASH}-plain`],
    deriver: null,
    ca: null,
    sigs: [],
    manifest: "bafyreib5fbf6vveh4duugpay5off6zj4zyei63jhnkzqj675jz37go5teu",
    listing: null,
    registered: Date.UTC(2026, 10, 30, 3, 0, 0),
    uploader: "token 0123456789ab (ci-runner)",
    fileHash: null,
    fileSize: null,
  };
  assert.equal(
    formatPathInfo(info),
    [
      `Store path: /nix/store/${HASH}-plain`,
      "NAR hash:   sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
      "NAR size:   120",
      "References: 0pvxky59ddjlcfiday8npilrxhnf09wc-glibc-2.35",
      `            ${HASH}-plain`,
      "Deriver:    (none)",
      "CA:         (none: input-addressed)",
      "Signatures: (none)",
      "Uploader:   token 0123456789ab (ci-runner)",
      "Added:      2026-11-30T03:00:00.000Z",
      "File hash:  (not recorded)",
      "File size:  (not recorded)",
      "PathInfo:   bafyreib5fbf6vveh4duugpay5off6zj4zyei63jhnkzqj675jz37go5teu",
      "Manifest:   bafyreib5fbf6vveh4duugpay5off6zj4zyei63jhnkzqj675jz37go5teu",
      "Listing:    (none)",
      "",
    ].join("\n"),
  );
  assert.match(formatPathInfo({ ...info, uploader: null }), /^Uploader: +\(unknown: not recorded\)$/m);
});
