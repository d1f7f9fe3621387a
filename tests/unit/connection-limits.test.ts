// The address a per-client connection limit counts (services/gateway/connection-limits.ts), and
// the server timeouts that follow from the limits.
import assert from "node:assert/strict";
import { test } from "node:test";
import { clientKey, serverTimeouts } from "../../services/gateway/connection-limits.ts";

test("clientKey: IPv4 as it is, IPv4-mapped IPv6 as IPv4, IPv6 by its /64", () => {
  assert.equal(clientKey("192.0.2.7"), "192.0.2.7");
  assert.equal(clientKey("::ffff:192.0.2.7"), "192.0.2.7");
  assert.equal(clientKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  assert.equal(clientKey("2001:db8:1:2:bbbb:cccc:dddd:eeee"), "2001:db8:1:2::/64");
  assert.equal(clientKey("2001:0DB8:0001:0002::ffff"), "2001:db8:1:2::/64");
  assert.equal(clientKey("2001:db8::1"), "2001:db8:0:0::/64");
  assert.equal(clientKey("::1"), "0:0:0:0::/64");
  assert.equal(clientKey("fe80::1%eth0"), "fe80:0:0:0::/64");
  assert.equal(clientKey("64:ff9b::192.0.2.7"), "64:ff9b:0:0::/64");
  assert.equal(clientKey(undefined), "unknown");
});

test("serverTimeouts: headers and keep-alive from the limit, checked often enough to hold it", () => {
  assert.deepEqual(serverTimeouts({ maxConnections: 10, maxConnectionsPerClient: 1, headerTimeoutSeconds: 10 }), {
    requestTimeout: 0,
    headersTimeout: 10_000,
    keepAliveTimeout: 10_000,
    connectionsCheckingInterval: 1000,
  });
  assert.equal(serverTimeouts({ maxConnections: 10, maxConnectionsPerClient: 1, headerTimeoutSeconds: 2 }).connectionsCheckingInterval, 500);
});
