// Metrics of the work queues (INGEST, INDEX) for the services that work them: how many items
// wait or are in progress per consumer (a lane of INGEST has its own), how old the oldest one is,
// and how the items a process worked ended. Depth and age are read from JetStream at scrape time:
// every replica reports the same queue, so sum() over replicas over-counts; use max().
import type { MetricsRegistry } from "../metrics.ts";
import type { WorkStream } from "./subjects.ts";
import type { Topology } from "./topology.ts";

/** How a worked item ended: acked, handed back for a retry, or dead-lettered. */
export type WorkOutcome = "done" | "retried" | "dead-lettered";

export interface WorkQueueMetrics {
  ended(stream: WorkStream, outcome: WorkOutcome): void;
}

export function workQueueMetrics(registry: MetricsRegistry, topology: Topology, stream: WorkStream, consumers: readonly string[]): WorkQueueMetrics {
  const pending = registry.gauge("nixcas_work_queue_items", "Items of a work queue not yet done (waiting or in progress), by stream and consumer.");
  const oldest = registry.gauge("nixcas_work_queue_oldest_item_age_seconds", "Age of the oldest item still in a work queue (0 when empty), by stream.");
  const items = registry.counter("nixcas_work_items_total", "Work items this process worked, by stream and outcome (done, retried, dead-lettered).");
  for (const outcome of ["done", "retried", "dead-lettered"] as const) items.inc({ stream, outcome }, 0);
  registry.beforeScrape(async () => {
    // A work-queue stream deletes an item when it is acked: its first message is the oldest not done.
    const info = await topology.jsm.streams.info(stream);
    const age = info.state.messages > 0 ? Math.max(0, (Date.now() - Date.parse(info.state.first_ts)) / 1000) : 0;
    oldest.set({ stream }, age);
    for (const consumer of consumers) {
      const c = await topology.jsm.consumers.info(stream, consumer);
      pending.set({ stream, consumer }, c.num_pending + c.num_ack_pending);
    }
  });
  return { ended: (s, outcome) => items.inc({ stream: s, outcome }) };
}
