// The ingester as its own process (`node services/ingester/main.ts`, what `nixcas service ingester` runs).
import { runServiceProcess } from "../../shared/nats/service-process.ts";
import { SERVICES } from "../registry.ts";

await runServiceProcess("ingester", SERVICES.ingester);
