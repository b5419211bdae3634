// Overview: agents and tasks by status, services healthy/total, the leader, the log.

import { get } from "../api.js";
import { facts, h, heading, link, table } from "../dom.js";

const AGENT_STATUSES = ["healthy", "suspect", "unresponsive", "dead", "draining", "left"];
const TASK_STATUSES = ["pending", "scheduled", "assigned", "running", "retry_wait", "completed", "dead_lettered", "cancelled"];

function byStatus(caption, all, counts, href) {
  const rows = all.map((s) => [link(`${href}?status=${s}`, s), String(counts[s] || 0)]);
  return table(caption, ["Status", "Count"], rows, { numeric: [1] });
}

// Events per second: the log's growth between two reads of /v1/stats.
function rateFrom(last, position, now) {
  if (!last || now <= last.at) return "—";
  return ((position - last.position) / ((now - last.at) / 1000)).toFixed(1);
}

export function mount(root, ctx) {
  const out = h("div", { class: "grid" });
  let last = null;
  root.append(heading("Overview"), out);
  return ctx.follow(async (signal) => {
    const [stats, services] = await Promise.all([get("/v1/stats", { signal }), get("/v1/services", { signal })]);
    return { index: Math.min(stats.index, services.index), stats: stats.body, services: services.body.services };
  }, ({ stats, services }) => {
    const now = Date.now();
    const perSecond = rateFrom(last, stats.log_last_position, now);
    last = { position: stats.log_last_position, at: now };
    const names = Object.keys(services).sort();
    const healthy = names.reduce((n, s) => n + services[s].healthy, 0);
    const instances = names.reduce((n, s) => n + services[s].instances, 0);
    out.replaceChildren(
      h("section", { class: "card", "aria-labelledby": "ov-agents" },
        h("h2", { id: "ov-agents" }, link("#/agents", `Agents: ${stats.agents.total}`)),
        byStatus("Agents by status", AGENT_STATUSES, stats.agents.by_status, "#/agents")),
      h("section", { class: "card", "aria-labelledby": "ov-tasks" },
        h("h2", { id: "ov-tasks" }, link("#/tasks", `Tasks: ${stats.tasks.total}`)),
        byStatus("Tasks by status", TASK_STATUSES, stats.tasks.by_status, "#/tasks")),
      h("section", { class: "card", "aria-labelledby": "ov-services" },
        h("h2", { id: "ov-services" }, link("#/services", "Services")),
        facts([["Healthy instances", `${healthy} of ${instances}`], ["Services", String(names.length)]]),
        table("Services, healthy of total", ["Service", "Healthy", "Instances"],
          names.map((s) => [link(`#/services/${encodeURIComponent(s)}`, s), String(services[s].healthy),
            String(services[s].instances)]), { numeric: [1, 2], empty: "No services registered." })),
      h("section", { class: "card", "aria-labelledby": "ov-log" },
        h("h2", { id: "ov-log" }, "Leader and log"),
        facts([
          ["Leader", stats.leader ? "this orchestrator holds the leader lease" : "another orchestrator leads (or none yet)"],
          ["Log position", `${stats.position} of ${stats.log_last_position}`],
          ["Events per second", perSecond],
          ["Restored from", stats.started_from ? `snapshot at position ${stats.started_from}` : "a full replay of the log"],
          ["Projections", stats.ready ? "ready" : "rebuilding"],
        ])),
    );
  });
}
