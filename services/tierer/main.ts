// The tierer as its own process (`node services/tierer/main.ts`, what `nixcas service tierer` runs).
import { runServiceProcess } from "../../shared/nats/service-process.ts";
import { SERVICES } from "../registry.ts";

await runServiceProcess("tierer", SERVICES.tierer);
