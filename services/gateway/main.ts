// Composition root of the gateway as its own process (`node services/gateway/main.ts`).
import { readFile } from "node:fs/promises";
import type { NixcasConfig } from "../../shared/config.ts";
import { ConfigError } from "../../shared/errors.ts";
import { runServiceProcess } from "../../shared/nats/service-process.ts";
import { parseSecretKey, type SecretKey } from "../../shared/signing.ts";
import { startGateway } from "./gateway.ts";

async function loadSecretKey(config: NixcasConfig): Promise<SecretKey> {
  if (!config.secretKeyFile) throw new ConfigError("NIXCAS_SECRET_KEY_FILE is not set: the gateway signs every narinfo it serves (create a key with `nixcas key generate <name>`)");
  let keyText: string;
  try {
    keyText = await readFile(config.secretKeyFile, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read NIXCAS_SECRET_KEY_FILE ${config.secretKeyFile}: ${(err as Error).message}`, { cause: err });
  }
  return parseSecretKey(keyText);
}

await runServiceProcess("gateway", async (deps) => startGateway({ ...deps, secretKey: await loadSecretKey(deps.config) }));
