// Composition root of the ingester as its own process (`node services/ingester/main.ts`).
import { runServiceProcess } from "../../shared/nats/service-process.ts";
import { startIngester } from "./ingester.ts";

await runServiceProcess("ingester", startIngester);
