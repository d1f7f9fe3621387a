// The version every service announces ($SRV.INFO, logs, the gateway's Server header).
// tests/unit/config.test.ts checks it equals package.json's.
export const NIXCAS_VERSION = "0.1.0";
