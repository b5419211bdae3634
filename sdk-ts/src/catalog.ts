// Service discovery: query the catalog, or watch a service. Both speak the protocol
// only (`<prefix>.catalog.query`, `<prefix>.catalog.changes.<service>`: what an agent or
// a reader may use with ORCH_AUTH=on). The twin of the Python SDK's sdk/catalog.py.

import type { NatsConnection } from "@nats-io/transport-node";

import { answer } from "./connection.js";
import { CATALOG_QUERY, Subjects, decode, encode, type JsonObject } from "./protocol.js";

export interface CatalogQueryOptions {
  service?: string | null;
  tags?: string[];
  labels?: Record<string, string>;
  healthyOnly?: boolean;
  prefix?: string;
  timeoutMs?: number;
}

export interface CatalogAnswer {
  position: number;
  instances: JsonObject[];
}

/** The `catalog.query` reply: the instances and the log position it answers at. */
export async function query(nc: NatsConnection, options: CatalogQueryOptions = {}):
    Promise<CatalogAnswer> {
  const subjects = new Subjects(options.prefix ?? "orch");
  const body = { service: options.service ?? null, tags: options.tags ?? [],
    labels: options.labels ?? {}, healthy_only: options.healthyOnly ?? true };
  const msg = await nc.request(subjects.command(CATALOG_QUERY), encode(body),
    { timeout: options.timeoutMs ?? 5000 });
  const reply = answer(msg);
  return { position: Number(reply.position), instances: reply.instances as JsonObject[] };
}

export interface WatchOptions {
  prefix?: string;
  /** Yield only healthy instances (default: all, with their `healthy`). */
  healthyOnly?: boolean;
  /** Ask again when nothing was heard for this long (seconds). */
  checkEveryS?: number;
  timeoutMs?: number;
}

/** Yield the service's instances now, then again whenever they change.
 *
 * The first answer comes from `catalog.query`; later ones from the change feed,
 * subscribed to before that query. Each change carries all of the service's instances
 * and its log position, so a change older than what is held is dropped. The feed is at
 * most once, so the watcher asks again at once after a reconnect, and whenever
 * `checkEveryS` pass without a change. Ends with an error once the connection closes;
 * `break` out of the loop to stop watching. */
export async function* watch(nc: NatsConnection, service: string, options: WatchOptions = {}):
    AsyncGenerator<JsonObject[]> {
  const prefix = options.prefix ?? "orch";
  const subjects = new Subjects(prefix);
  const checkEveryMs = (options.checkEveryS ?? 2) * 1000;
  let position = -1;
  let instances: JsonObject[] = [];
  let arrived = false;
  let reconnected = false;
  let wake: (() => void) | null = null;
  const poke = () => { const w = wake; wake = null; w?.(); };
  const offer = (at: number, found: JsonObject[]) => {
    if (at <= position) return;
    position = at;
    instances = found;
    arrived = true;
    poke();
  };
  const statuses = nc.status();
  void (async () => {
    for await (const status of statuses) {
      if (status.type === "reconnect") {
        reconnected = true;
        poke();
      }
    }
  })().catch(() => {});
  const feed = nc.subscribe(subjects.catalogChanges(service), {
    callback: (err, msg) => {
      if (err) return;
      try {
        const change = decode(msg.data) as JsonObject;
        if (change.service === service && Number.isInteger(change.position)
            && Array.isArray(change.instances)) {
          offer(change.position as number, change.instances as JsonObject[]);
        }
      } catch {
        // unreadable: the next change or answer makes good
      }
    },
  });
  const ask = async () => {
    const found = await query(nc, { service, healthyOnly: false, prefix, timeoutMs: options.timeoutMs });
    offer(found.position, found.instances);
  };
  const visible = () => (options.healthyOnly ? instances.filter((i) => i.healthy) : [...instances]);
  try {
    await nc.flush(); // no change after the answer below is missed
    await ask();
    let shown = visible();
    yield shown;
    for (;;) {
      let quiet = false;
      if (!arrived && !reconnected) {
        let timer: NodeJS.Timeout | undefined;
        quiet = await new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), checkEveryMs);
          wake = () => resolve(false);
        });
        clearTimeout(timer);
        wake = null;
      }
      arrived = false;
      if (nc.isClosed()) throw new Error("the connection is closed");
      if (quiet || reconnected) {
        const was: boolean = reconnected;
        reconnected = false;
        try {
          await ask();
        } catch {
          reconnected = was; // asked again next time round
        }
      }
      const now = visible();
      if (JSON.stringify(now) !== JSON.stringify(shown)) {
        shown = now;
        yield now;
      }
    }
  } finally {
    feed.unsubscribe();
    (statuses as { stop?: () => void }).stop?.();
  }
}
