// An orchestrator agent written with nats.js (@nats-io/transport-node), not the Python
// SDK: it shows that the protocol (docs/protocol.md, "Agent lifecycle checklist" and
// "Security") is all an agent needs. tests/security/test_nats_js_agent.py runs it
// against an orchestrator with ORCH_AUTH=on.
//
// It makes its own nkey: the seed stays in this process's memory and is never printed
// or sent; only the public key is. Its first connection also presents the one-time
// enrollment token; later ones (credential renewals, reconnects) the key alone.
//
// Environment:
//   NATS_URL          nats://host:port (comma-separated for several)
//   AGENT_ID          its agent id, also its NATS identity
//   ENROLLMENT_TOKEN  oe1.<agent id>.<secret>, from `orchestrator enroll <agent id>`
//   ORCH_PREFIX       the subject prefix (default "orch")
//   PROBE_AGENT       optional: another agent's id, to try acting as it (it must fail)
//
// It runs tasks of kind "echo" (the result is the payload). On SIGTERM or SIGINT it
// deregisters and exits 0. It reports what it does as JSON lines on stdout:
//   {"event": "key", "public_key": "U..."}
//   {"event": "connected", "token_sent": true}
//   {"event": "registered", "incarnation": 1, "credentials_ttl_s": 3, ...}
//   {"event": "probe", "action": "...", "subject": "...", "outcome": "...", "error": "..."}
//   {"event": "completed", "task_id": "...", "result": ...}
//   {"event": "renewed"} / {"event": "reconnected", "token_sent": false}
//   {"event": "deregistered", "reply": {...}}
//   {"event": "error", "where": "...", "error": "..."}

import { jetstream } from "@nats-io/jetstream";
import { createUser } from "@nats-io/nkeys";
import { connect, errors, nkeyAuthenticator } from "@nats-io/transport-node";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === "") {
    console.error(`agent.mjs: ${name} is required`);
    process.exit(2);
  }
  return value;
};

const url = env("NATS_URL");
const agentId = env("AGENT_ID");
const enrollmentToken = env("ENROLLMENT_TOKEN");
const prefix = env("ORCH_PREFIX", "orch");
const probeAgent = process.env.PROBE_AGENT || "";

const RENEW_AT = 0.7; // share of the credentials' lifetime after which it reconnects
const REQUEST_TIMEOUT_MS = 5000;

const report = (event, fields = {}) => {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
};
const failure = (where, err) => {
  report("error", { where, error: String(err?.message ?? err) });
};

const subject = (command) => `${prefix}.agent.${agentId}.${command}`;
const encode = (body) => new TextEncoder().encode(JSON.stringify(body));
const decode = (msg) => JSON.parse(new TextDecoder().decode(msg.data));

// --- its own key: made here, kept here -----------------------------------------------
const key = createUser();
const seed = key.getSeed(); // bytes, in memory only
report("key", { public_key: key.getPublicKey() });

// The enrollment token goes with the first connection only: once it has been let in,
// the orchestrator knows the key, and the token is used up.
let enrolled = false;
let tokenSent = false; // whether the latest CONNECT carried the token
const enrollmentAuthenticator = () => {
  tokenSent = !enrolled;
  return enrolled ? undefined : { auth_token: enrollmentToken };
};

const nc = await connect({
  servers: url.split(","),
  name: agentId, // who it says it is; the key proves it
  inboxPrefix: `_INBOX.${agentId}`, // the only inbox it may subscribe to
  authenticator: [nkeyAuthenticator(seed), enrollmentAuthenticator],
  maxReconnectAttempts: -1,
  reconnectTimeWait: 250,
  timeout: 5000,
});
report("connected", { token_sent: tokenSent });
enrolled = true;

const js = jetstream(nc);
let stopping = false;
let incarnation = 0;
let heartbeatIntervalMs = 1000;
let credentialsTtlS = null;
let seq = 0;
const running = new Map(); // task id -> {token, cancelled}
const timers = { heartbeat: null, renewal: null };
const sleep = (ms, which) => new Promise((resolve) => { timers[which] = setTimeout(resolve, ms); });

class CommandError extends Error {
  constructor(error) {
    super(`${error?.code ?? "unknown"}: ${error?.message ?? ""}`);
    this.code = error?.code ?? "unknown";
  }
}

async function request(command, body) {
  const msg = await nc.request(subject(command), encode(body), { timeout: REQUEST_TIMEOUT_MS });
  const reply = decode(msg);
  if (!reply.ok) throw new CommandError(reply.error);
  return reply;
}

// A report must get through: retried on no answer or "unavailable", until stopping.
async function reportUntilAnswered(command, body) {
  let delay = 100;
  while (!stopping) {
    try {
      return await request(command, body);
    } catch (err) {
      if (err instanceof CommandError && err.code !== "unavailable") throw err;
      failure(`${command} (retrying)`, err);
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 2000);
  }
  throw new Error("stopping");
}

// --- assignments ---------------------------------------------------------------------
async function take(assignment) {
  const held = running.get(assignment.task_id);
  if (held) {
    if (held.token !== assignment.token) {
      held.token = assignment.token; // given to us again: go on under the new token
      reportUntilAnswered("task.accept", { task_id: assignment.task_id, token: held.token })
        .catch((err) => failure("task.accept", err));
    }
    return;
  }
  const work = { token: assignment.token, cancelled: false };
  running.set(assignment.task_id, work);
  try {
    await reportUntilAnswered("task.accept", { task_id: assignment.task_id, token: work.token });
    if (assignment.kind !== "echo") {
      await reportUntilAnswered("task.fail", {
        task_id: assignment.task_id, token: work.token,
        error: `no handler for kind ${assignment.kind}`, retryable: false,
      });
      return;
    }
    const result = assignment.payload;
    if (work.cancelled) return; // cancelled or revoked: report nothing
    await reportUntilAnswered("task.complete", {
      task_id: assignment.task_id, token: work.token, result,
    });
    report("completed", { task_id: assignment.task_id, result });
  } catch (err) {
    failure(`task ${assignment.task_id}`, err); // stale_token and the like: drop it
  } finally {
    running.delete(assignment.task_id);
  }
}

function onAssignment(err, msg) {
  if (err) return failure("tasks subscription", err);
  let assignment;
  try {
    assignment = decode(msg);
  } catch (e) {
    return failure("unreadable assignment", e);
  }
  take(assignment);
}

async function recoverAssignments() {
  try {
    const reply = await request("assignments", {});
    for (const assignment of reply.assignments) take(assignment);
  } catch (err) {
    failure("assignments", err);
  }
}

// --- control -------------------------------------------------------------------------
function onControl(err, msg) {
  if (err) return failure("control subscription", err);
  let control;
  try {
    control = decode(msg);
  } catch (e) {
    return failure("unreadable control message", e);
  }
  if (control.type === "reregister") {
    if (control.incarnation != null && control.incarnation !== incarnation) return;
    register().catch((e) => failure("re-register", e));
  } else if ((control.type === "cancel" || control.type === "revoke") && control.task_id) {
    const work = running.get(control.task_id);
    if (work) work.cancelled = true;
  }
}

// --- register, heartbeat, renew ------------------------------------------------------
const instanceId = `js-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`;

async function register() {
  const reply = await request("register", {
    capabilities: [], kinds: ["echo"], capacity: 1, instance_id: instanceId,
  });
  incarnation = reply.incarnation;
  heartbeatIntervalMs = reply.heartbeat_interval_s * 1000;
  credentialsTtlS = reply.credentials_ttl_s ?? null;
  report("registered", {
    incarnation, heartbeat_subject: reply.heartbeat_subject,
    heartbeat_interval_s: reply.heartbeat_interval_s, credentials_ttl_s: credentialsTtlS,
  });
  return reply;
}

async function heartbeatLoop() {
  while (!stopping) {
    const started = Date.now();
    seq += 1;
    try {
      await js.publish(`${prefix}.hb.${agentId}`, encode({
        incarnation, seq, load: running.size > 0 ? 1 : 0, running: [...running.keys()],
      }), { timeout: Math.max(heartbeatIntervalMs, 500) });
    } catch (err) {
      if (!stopping) failure("heartbeat", err); // keep trying through outages
    }
    const wait = Math.max(0, heartbeatIntervalMs - (Date.now() - started));
    await sleep(wait, "heartbeat");
  }
}

// Reconnecting gets fresh credentials from the auth callout, with the key alone.
function scheduleRenewal() {
  if (!credentialsTtlS || stopping) return;
  timers.renewal = setTimeout(async () => {
    if (stopping) return;
    try {
      await nc.reconnect();
      report("renewed");
    } catch (err) {
      failure("renew", err);
    }
    scheduleRenewal();
  }, credentialsTtlS * RENEW_AT * 1000);
}

(async () => {
  for await (const status of nc.status()) {
    if (status.type === "reconnect") {
      report("reconnected", { token_sent: tokenSent });
      recoverAssignments(); // assignments sent while it was away were lost
    }
  }
})();

// --- trying to act as another agent: the server must refuse -------------------------
async function probe(other) {
  const target = `${prefix}.agent.${other}.register`;
  try {
    const msg = await nc.request(target, encode({ capabilities: [] }), { timeout: 3000 });
    report("probe", { action: "request", subject: target, outcome: "answered",
                      error: new TextDecoder().decode(msg.data) });
  } catch (err) {
    const outcome = err instanceof errors.PermissionViolationError ? "permission violation"
      : (err?.cause instanceof errors.PermissionViolationError ? "permission violation"
        : err?.name ?? "error");
    report("probe", { action: "request", subject: target, outcome, error: String(err?.message) });
  }

  const tasks = `${prefix}.agent.${other}.tasks`;
  const sub = nc.subscribe(tasks, { callback: () => {} });
  const closed = await Promise.race([
    sub.closed,
    nc.flush().then(() => new Promise((resolve) => setTimeout(() => resolve("open"), 1000))),
  ]);
  const outcome = closed instanceof errors.PermissionViolationError ? "permission violation"
    : (closed === "open" ? "subscribed" : String(closed));
  report("probe", { action: "subscribe", subject: tasks, outcome,
                    error: closed instanceof Error ? closed.message : "" });
  if (!sub.isClosed()) sub.unsubscribe();
}

// --- shutdown ------------------------------------------------------------------------
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  clearTimeout(timers.heartbeat);
  clearTimeout(timers.renewal);
  try {
    const reply = await request("deregister", { incarnation });
    report("deregistered", { signal, reply });
  } catch (err) {
    failure("deregister", err);
  }
  try {
    await nc.drain();
  } catch (err) {
    failure("drain", err);
  }
  process.exit(0);
}
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));

// --- start: subscribe first, then register -------------------------------------------
try {
  nc.subscribe(subject("tasks"), { callback: onAssignment });
  nc.subscribe(subject("control"), { callback: onControl });
  await nc.flush(); // subscribed before an assignment can be sent
  await register();
  heartbeatLoop();
  scheduleRenewal();
  if (probeAgent) await probe(probeAgent);
  report("ready");
} catch (err) {
  failure("start", err);
  process.exit(1);
}
