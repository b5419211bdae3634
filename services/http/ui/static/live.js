// Following the API live: each view loads, then waits with a blocking query
// (?index=<X-Orch-Index>&wait=S) until the log moves past what it showed, and loads
// again. A pause switch stops the updates; a lost connection shows "Disconnected,
// retrying" and recovers on its own, with a capped backoff. A blocking query can hang on
// a server that is going away (it lets a waiting query finish), so /healthz is asked
// every PING_MS besides: no answer within PING_TIMEOUT_MS is a lost connection at once.

import { ApiError, get } from "./api.js";

export const WAIT_S = 10; // also refreshes what the log does not move (heartbeats, ages)
const MIN_INTERVAL_MS = 250; // throttling: at most four updates a second per view
const BACKOFF_MS = [500, 1000, 2000, 4000];
export const PING_MS = 1000;
const PING_TIMEOUT_MS = 3000;
const waits = new Set(); // the blocking queries in flight: a failed ping ends them

const listeners = new Set();
export const live = {
  paused: false,
  connection: "connecting", // connecting | live | disconnected
  set(changes) {
    Object.assign(this, changes);
    for (const listener of listeners) listener(this);
  },
  subscribe(listener) {
    listeners.add(listener);
    listener(this);
  },
};

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

function untilResumed(signal) {
  return new Promise((resolve) => {
    if (!live.paused) return resolve();
    const check = () => { if (!live.paused || signal.aborted) { listeners.delete(check); resolve(); } };
    listeners.add(check);
    signal.addEventListener("abort", check, { once: true });
  });
}

// The cheapest blocking query: returns once the log passes `index`, or after WAIT_S;
// ended early (an error) when a ping finds the server gone.
async function waitPast(index, signal) {
  const step = new AbortController();
  const stop = () => step.abort();
  signal.addEventListener("abort", stop, { once: true });
  waits.add(step);
  try {
    await get(`/v1/tasks?limit=1&index=${index}&wait=${WAIT_S}`, { signal: step.signal });
  } finally {
    waits.delete(step);
    signal.removeEventListener("abort", stop);
  }
}

// Is the server there? /healthz needs no token. A failure shows at once and ends the
// blocking queries (their loops then retry with backoff and say "Live" when answered).
export function watchConnection() {
  const ping = async () => {
    let ok = false;
    try {
      const response = await fetch("/healthz", { cache: "no-store", credentials: "omit",
        signal: AbortSignal.timeout(PING_TIMEOUT_MS) });
      ok = response.ok;
    } catch {
      ok = false;
    }
    if (!ok && live.connection !== "disconnected") {
      live.set({ connection: "disconnected" });
      for (const step of waits) step.abort();
    }
    setTimeout(ping, PING_MS);
  };
  setTimeout(ping, PING_MS);
}

// Run `load(signal)` (which resolves to {index, ...}) and `render(result)` now and at
// every change of the log. `fail(error)` shows an API refusal; it returns true to keep
// following (a 404 may be fixed by the log), false to stop (401, 403).
// Returns the function that stops following.
export function follow(load, render, fail) {
  const controller = new AbortController();
  const { signal } = controller;
  (async () => {
    let index = null;
    let failures = 0;
    while (!signal.aborted) {
      if (live.paused) {
        await untilResumed(signal);
        index = null; // load afresh after a pause
        continue;
      }
      const started = Date.now();
      try {
        if (index !== null) await waitPast(index, signal);
        if (signal.aborted) return;
        if (live.paused) continue;
        const result = await load(signal);
        if (signal.aborted) return;
        if (live.paused) continue;
        render(result);
        index = result.index;
        failures = 0;
        live.set({ connection: "live" });
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof ApiError && !error.transient) {
          live.set({ connection: "live" });
          if (!fail(error)) return;
          index = error.index;
        } else {
          live.set({ connection: "disconnected" });
          index = null;
          await sleep(BACKOFF_MS[Math.min(failures, BACKOFF_MS.length - 1)], signal);
          failures += 1;
          continue;
        }
      }
      const spent = Date.now() - started;
      if (spent < MIN_INTERVAL_MS) await sleep(MIN_INTERVAL_MS - spent, signal);
    }
  })();
  return () => controller.abort();
}
