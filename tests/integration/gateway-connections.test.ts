// Connection hygiene of the gateway (services/gateway/connection-limits.ts): a flood of slow
// connections from one address does not lock other clients out, and connections that do not
// complete their headers in time are closed. All of 127.0.0.0/8 is loopback on Linux, so the
// flood comes from 127.0.0.2 and the well-behaved client from 127.0.0.1.
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { ingestClientFor } from "../../shared/nats/ingest-client.ts";
import { startCluster, type Cluster } from "../helpers/cluster.ts";
import { gatewayMetric, rawGet } from "../helpers/cache-http.ts";
import { narFromTree } from "../helpers/nar-trees.ts";
import { hashPartOf, metaFor } from "../helpers/pipeline.ts";

const HEADER_TIMEOUT_SECONDS = 2;
const PER_CLIENT = 256;
const FLOOD = 4200;

let cluster: Cluster;
let port: number;
let hashPart: string;

before(async () => {
  cluster = await startCluster({
    env: {
      NIXCAS_HTTP_HEADER_TIMEOUT_SECONDS: String(HEADER_TIMEOUT_SECONDS),
      NIXCAS_HTTP_MAX_CONNECTIONS_PER_CLIENT: String(PER_CLIENT),
      NIXCAS_LOG_LEVEL: "info",
    },
  });
  port = Number(new URL(cluster.url).port);
  const nar = narFromTree("served under a flood\n");
  const meta = metaFor(nar, "flood");
  const ingest = ingestClientFor(cluster.topology);
  const { uploadId } = await ingest.uploadNar(meta, nar);
  assert.equal((await ingest.waitFor(uploadId, 60_000)).state, "done");
  hashPart = hashPartOf(meta.storePath);
});
after(async () => {
  await cluster?.stop();
});

const metric = (name: string, labels: Record<string, string> = {}) => gatewayMetric(cluster.url, name, labels);

/** One slow-loris connection: the request line and a header, then one more header line now and then. */
interface SlowClient {
  socket: Socket;
  /** Whatever the server sent before it closed the connection. */
  received: string;
  closed: Promise<void>;
}

function slowClient(localAddress: string): Promise<SlowClient> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: "127.0.0.1", localAddress });
    const client: SlowClient = { socket, received: "", closed: new Promise((r) => socket.once("close", () => r())) };
    let trickle: NodeJS.Timeout | undefined;
    socket.on("data", (d: Buffer) => (client.received += d.toString("latin1")));
    socket.on("error", () => {});
    socket.once("close", () => {
      clearInterval(trickle);
      resolve(client); // refused before it connected, or closed later (then already resolved)
    });
    socket.once("connect", () => {
      socket.write("GET /nix-cache-info HTTP/1.1\r\nHost: x\r\n");
      trickle = setInterval(() => socket.write("X-Slow: 1\r\n"), 300);
      resolve(client);
    });
  });
}

describe("connection limits", () => {
  test(`${FLOOD} slow connections from one address: another client is still served`, async () => {
    const refused0 = await metric("nixcas_gateway_connections_refused_total", { reason: "client-limit" });
    const flood: SlowClient[] = [];
    try {
      // Opened in batches, so the listen backlog is not what refuses them.
      for (let i = 0; i < FLOOD; i += 200) {
        flood.push(...(await Promise.all(Array.from({ length: Math.min(200, FLOOD - i) }, () => slowClient("127.0.0.2")))));
      }
      const held = flood.filter((c) => !c.socket.destroyed).length;
      // The gateway has accepted the flood's first connections and refused the rest at once.
      const open = await metric("nixcas_gateway_open_connections");
      for (const path of ["/nix-cache-info", `/${hashPart}.narinfo`, "/nix-cache-info", `/${hashPart}.narinfo`]) {
        const answer = await rawGet(`${cluster.url}${path}`);
        assert.equal(answer.status, 200, `GET ${path} during the flood`);
        assert.equal(answer.cut, false);
      }
      const narinfo = await rawGet(`${cluster.url}/${hashPart}.narinfo`);
      assert.match(narinfo.body.toString(), new RegExp(`^StorePath: /nix/store/${hashPart}-flood$`, "m"));
      // Most of the flood was refused at once (slots freed by the header timeout may have let a
      // few more in), and the gateway never held more of it than the per-client limit.
      const refused = (await metric("nixcas_gateway_connections_refused_total", { reason: "client-limit" })) - refused0;
      assert.ok(refused > FLOOD / 2, `refused ${refused} of the flood at once (${held} still open on our side)`);
      assert.ok(open <= PER_CLIENT + 4, `at most the per-client limit of the flood was held open (${open})`);
    } finally {
      for (const c of flood) c.socket.destroy();
    }
  });

  test("headers that do not complete in time: answered 408 and closed", async () => {
    const before = await metric("nixcas_gateway_connections_refused_total", { reason: "header-timeout" });
    const slow = await slowClient("127.0.0.3");
    await slow.closed;
    assert.match(slow.received, /^HTTP\/1\.1 408 /);
    assert.ok((await metric("nixcas_gateway_connections_refused_total", { reason: "header-timeout" })) >= before + 1);
  });

  test("a connection that sends nothing, and one idle after a response, are closed", async () => {
    const silent = connect({ port, host: "127.0.0.1", localAddress: "127.0.0.4" });
    silent.on("error", () => {});
    const silentClosed = new Promise<void>((r) => silent.once("close", () => r()));

    const kept = connect({ port, host: "127.0.0.1", localAddress: "127.0.0.4" });
    kept.on("error", () => {});
    let answer = "";
    kept.on("data", (d: Buffer) => (answer += d.toString("latin1")));
    const keptClosed = new Promise<void>((r) => kept.once("close", () => r()));
    kept.write("GET /nix-cache-info HTTP/1.1\r\nHost: x\r\n\r\n");

    await Promise.all([silentClosed, keptClosed]);
    assert.match(answer, /^HTTP\/1\.1 200 /, "the kept-alive connection was answered before it was closed");
    assert.match(answer, /Keep-Alive: timeout=2/i);
  });
});
