// The gateway as its own process (`node services/gateway/main.ts`, what `nixcas service gateway` runs).
import { runServiceProcess } from "../../shared/nats/service-process.ts";
import { SERVICES } from "../registry.ts";

await runServiceProcess("gateway", SERVICES.gateway);
