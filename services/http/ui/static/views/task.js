// One task: its state, why it waits, and its timeline from /why, each move drawn as the
// causal chain behind it (missed heartbeats, Suspected, DeclaredDead, the move), linked
// to the agents and events involved.

import { ApiError, get } from "../api.js";
import { actionBar, send } from "../actions.js";
import { agentLink, facts, h, heading, labels, link, notice, status, table, when } from "../dom.js";
import { agentEventLink, detectorText, identity } from "./detail.js";

const MOVES = new Set(["Reassigned", "Requeued"]);
const FINISHED = new Set(["completed", "dead_lettered", "cancelled"]);

function moveChain(step) {
  const cause = step.cause;
  const items = [];
  if (cause && cause.aggregate_id && cause.position) {
    const agentId = cause.aggregate_id;
    const reading = (cause.suspected || cause).detector;
    if (reading) {
      items.push(h("li", {}, reading.last_heartbeat_seq
        ? `Heartbeats missed after #${reading.last_heartbeat_seq}${reading.last_heartbeat_at ? ` (sent ${reading.last_heartbeat_at})` : ""}`
        : "No heartbeat heard", " from ", agentLink(agentId)));
    }
    if (cause.suspected) {
      items.push(h("li", {}, agentEventLink(agentId, cause.suspected.position, `Suspected (event ${cause.suspected.position})`)));
    }
    items.push(h("li", {}, agentEventLink(agentId, cause.position, `${cause.type} (event ${cause.position})`), " of ", agentLink(agentId)));
  } else if (cause) {
    items.push(h("li", {}, `${cause.type}: ${cause.reason || ""}`));
  }
  const to = step.data.agent_id;
  items.push(h("li", {}, `${step.type} (event ${step.position})`, to ? [" to ", agentLink(to)] : " to the queue"));
  return h("ol", { class: "chain", "aria-label": `Causal chain of event ${step.position}` }, items);
}

function details(step) {
  const parts = [];
  if (step.reason) parts.push(h("div", {}, step.reason));
  if (MOVES.has(step.type)) {
    parts.push(moveChain(step));
    const lines = [];
    if (step.cause && step.cause.detector) lines.push(h("li", {}, `${step.cause.type}: ${detectorText(step.cause.detector)}`));
    if (step.cause && step.cause.suspected && step.cause.suspected.detector) {
      lines.push(h("li", {}, `Suspected: ${detectorText(step.cause.suspected.detector)}`));
    }
    if (step.placement) lines.push(h("li", {}, `placement: ${step.placement.reason}`));
    if (lines.length) parts.push(h("ul", { class: "details" }, lines));
  } else if (step.placement) {
    parts.push(h("ul", { class: "details" }, h("li", {}, `placement: ${step.placement.reason}`)));
  }
  return parts;
}

// The flow control fields a task was given (docs/flow-control.md), those it has.
function flowFacts(task) {
  const pairs = [];
  if (task.concurrency_key) {
    pairs.push(["Concurrency key", h("span", {}, `${task.concurrency_key} (`, link("#/limits", "limits"), ")")]);
  }
  if (task.fairness_key) pairs.push(["Fairness key", task.fairness_key]);
  if (task.selector && Object.keys(task.selector).length) pairs.push(["Selector", labels(task.selector)]);
  if (task.prefer && Object.keys(task.prefer).length) pairs.push(["Prefers", labels(task.prefer)]);
  return pairs;
}

const LIMITS = { concurrency_limit: "Concurrency limit", rate_limit: "Rate limit" };

// Why a queued task waits: the limit of its key holding it (and when its next token
// comes), then the agents, each reason with the agents it rules out.
function waitingSection(waiting) {
  const limit = waiting.limit;
  const reasons = waiting.reasons.filter((r) => !(limit && r.code === limit.code && r.key === limit.key));
  // The summary says the limit's message as of the answer; its next token counts down.
  const held = limit ? [
    ["Held by", h("span", { "data-code": limit.code }, `${LIMITS[limit.code] || limit.code} of key ${limit.key} (`,
      link("#/limits", "limits"), ")")],
  ] : [];
  if (limit && limit.next_at) held.push(["Next token", when(limit.next_at)]);
  if (waiting.fairness_key) {
    held.push(["Turns", `takes turns with the other fairness keys' tasks, as ${waiting.fairness_key}`]);
  }
  return h("section", { "aria-labelledby": "waiting" }, h("h2", { id: "waiting" }, "Why it waits"),
    h("p", {}, waiting.summary),
    held.length ? facts(held) : "",
    reasons.length ? [h("h3", { id: "waiting-agents" }, limit ? "Agents, the limit aside" : "Agents"),
      h("ul", { "aria-labelledby": "waiting-agents" }, reasons.map((r) => h("li", { "data-code": r.code }, r.message)))] : "");
}

export function mount(root, ctx) {
  const id = ctx.id;
  const enc = encodeURIComponent(id);
  const out = h("div");
  const actions = actionBar(`Actions on task ${id}`);
  root.append(heading(`Task ${id}`), actions.element, out);
  const cancel = ["Cancel task", () => send(`/v1/tasks/${enc}/cancel`, { reason: "cancelled from the dashboard" }, `Task ${id}`)];
  return ctx.follow(async (signal) => {
    const [view, why] = await Promise.all([
      get(`/v1/tasks/${enc}`, { signal }).catch((error) => {
        if (error instanceof ApiError && error.status === 404) return { body: null, index: error.index };
        throw error;
      }),
      get(`/v1/tasks/${enc}/why`, { signal }),
    ]);
    return { index: view.index, task: view.body, why: why.body };
  }, ({ task, why }) => {
    const open = task && !FINISHED.has(task.status);
    actions.show(open ? "open" : "finished", open ? [cancel] : []);
    const rows = why.chain.map((s) => [String(s.position), when(s.at), s.type,
      details(s), identity(s.identity)]);
    const waiting = why.waiting;
    out.replaceChildren(
      task ? facts([
        ["Status", status(task.status)],
        ["Kind", task.kind],
        ["Agent", agentLink(task.agent_id)],
        ["Attempt", `${task.attempt} of ${task.max_attempts}`],
        ["Requires", task.requires.join(", ") || "nothing"],
        ...flowFacts(task),
        ["Progress", `${Math.round(task.progress * 100)}%`],
        ["Error", task.error || "none"],
        ["Submitted", when(task.submitted_at)],
      ]) : notice(`Task ${id} is no longer on the board (finished longer ago than the retention); its history follows.`),
      waiting ? waitingSection(waiting) : "",
      h("h2", {}, "Timeline"),
      table(`Timeline of task ${id}`, ["Position", "Time", "Event", "What happened", "By"], rows, { numeric: [0] }),
    );
  }, { notFound: (error) => out.replaceChildren(notice(error.message)) });
}
