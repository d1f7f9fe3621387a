// `nixcas up` as a user runs it: a child process in its own process group (as in a terminal),
// with its own data dir and local nats-server, its stdout banner and JSON log lines at hand.
import assert from "node:assert/strict";
import { after } from "node:test";
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { until } from "./pipeline.ts";

export const NIXCAS = new URL("../../cli/nixcas.ts", import.meta.url).pathname;

export interface Up {
  child: ChildProcess;
  dataDir: string;
  stdout(): string;
  stderr(): string;
  /** The JSON log lines so far. */
  logs(): Array<Record<string, unknown>>;
  /** Exit code (or signal name) once it exited. */
  exited: Promise<number | string>;
}

const started: Up[] = [];
const tempDirs: string[] = [];

/** Kills every `nixcas up` still running and removes the data dirs (call from `after`). */
export async function cleanUpProcesses(): Promise<void> {
  for (const up of started) if (up.child.exitCode === null && up.child.signalCode === null) up.child.kill("SIGKILL");
  for (const dir of tempDirs.splice(0)) await rm(dir, { recursive: true, force: true });
}

export async function newDataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "nixcas-up-"));
  tempDirs.push(dir);
  return dir;
}

export function startUp(dataDir: string, env: Record<string, string> = {}): Up {
  const child = spawn(process.execPath, [NIXCAS, "up"], {
    // Its own process group, as in a terminal: a Ctrl-C is a SIGINT to the whole group.
    detached: true,
    env: { ...process.env, NATS_URL: "", NATS_CREDS: "", NIXCAS_DATA_DIR: dataDir, NIXCAS_HTTP_HOST: "127.0.0.1", NIXCAS_HTTP_PORT: "0", NIXCAS_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString("utf8")));
  child.stderr!.on("data", (d: Buffer) => (err += d.toString("utf8")));
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? "?")));
  const up: Up = {
    child,
    dataDir,
    stdout: () => out,
    stderr: () => err,
    logs: () =>
      err
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    exited,
  };
  started.push(up);
  return up;
}

/** Waits until `up` printed its banner; returns the gateway URL. */
export async function gatewayOf(up: Up): Promise<string> {
  await until("nixcas up to print its URL", () => /gateway: +http/.test(up.stdout()) || up.child.exitCode !== null, 60_000, 100);
  const m = /gateway: +(http:\/\/\S+)/.exec(up.stdout());
  assert.ok(m, `nixcas up did not start:\n${up.stderr()}`);
  return m[1]!;
}

/** Another `nixcas` command as a child process (e.g. a lone `nixcas service`), killed after the test file. */
export function spawnNixcas(args: string[], env: NodeJS.ProcessEnv): { child: ChildProcess; exited: Promise<number | string>; output(): string } {
  const child = spawn(process.execPath, [NIXCAS, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (d: Buffer) => (output += d.toString("utf8")));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString("utf8")));
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? "?")));
  after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  return { child, exited, output: () => output };
}

/** A TCP port free on 127.0.0.1 right now (for a health port or a server to start). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface NixcasRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `nixcas <args>` to its end as a user would (a child process, no terminal); killed after `timeoutMs`. */
export function runNixcas(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 300_000): Promise<NixcasRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [NIXCAS, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => (stdout += d.toString("utf8")));
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
