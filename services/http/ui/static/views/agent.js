// One agent: its state, the drain and undrain actions, its history timeline (/history
// with the reasons of /why), and the tasks moved off it.

import { get } from "../api.js";
import { actionBar, send } from "../actions.js";
import { agentLink, facts, h, heading, labels, load, notice, status, table, taskLink, when } from "../dom.js";
import { detectorText, identity } from "./detail.js";

export function mount(root, ctx) {
  const id = ctx.id;
  const marked = Number(ctx.params.get("event") || 0);
  const enc = encodeURIComponent(id);
  const out = h("div");
  const actions = actionBar(`Actions on agent ${id}`);
  let scrolled = false;
  root.append(heading(`Agent ${id}`), actions.element, out);
  const drain = ["Drain", () => send(`/v1/agents/${enc}/drain`, {}, `Agent ${id}`)];
  const undrain = ["Undrain", () => send(`/v1/agents/${enc}/undrain`, {}, `Agent ${id}`)];
  return ctx.follow(async (signal) => {
    const [view, history, why] = await Promise.all([
      get(`/v1/agents/${enc}`, { signal }),
      get(`/v1/agents/${enc}/history`, { signal }),
      get(`/v1/agents/${enc}/why`, { signal }),
    ]);
    return { index: view.index, agent: view.body, events: history.body.events, why: why.body };
  }, ({ agent, events, why }) => {
    // Suspect hides whether it drains: both are offered. Dead or gone: neither.
    // Unresponsive hides whether it drains, as suspect does: both are offered.
    actions.show(agent.status, { healthy: [drain], draining: [undrain], suspect: [drain, undrain],
      unresponsive: [drain, undrain] }[agent.status] || []);
    const steps = new Map(why.chain.map((s) => [s.event_id, s]));
    const rows = events.map((e) => {
      const step = steps.get(e.event_id) || {};
      const details = [step.reason || "", step.detector ? h("div", { class: "muted" }, `detector: ${detectorText(step.detector)}`) : ""];
      const attrs = e.position === marked ? { class: "highlight", "aria-current": "true", id: `event-${e.position}` } : {};
      return { attrs, cells: [String(e.position), when(e.recorded_at), e.type, details, identity(e.identity)] };
    });
    out.replaceChildren(
      facts([
        ["Status", status(agent.status)],
        // A gray failure: heartbeats, but its work left undone (History says which tasks).
        ...(agent.unresponsive_until ? [["Out of placement until", when(agent.unresponsive_until)]] : []),
        ["Incarnation", String(agent.incarnation)],
        ["Capabilities", agent.capabilities.join(", ") || "none"],
        ["Task kinds", agent.kinds.length ? agent.kinds.join(", ") : "any"],
        ["Labels", labels(agent.labels) || "none"],
        ["Running / capacity, load", load(agent)],
        ["Last heartbeat", when(agent.last_heartbeat_at)],
        ...(agent.progress_every_s ? [["Progress promised", `every ${agent.progress_every_s} s`]] : []),
        ["Registered", when(agent.registered_at)],
        ["Running", agent.running.length ? agent.running.map((t, i) => [i ? ", " : "", taskLink(t)]) : "nothing"],
      ]),
      h("h2", {}, "History"),
      table(`History of agent ${id}`, ["Position", "Time", "Event", "Why", "By"], rows, { numeric: [0] }),
      h("h2", {}, "Tasks moved off it"),
      table(`Tasks moved off agent ${id}`, ["Position", "Task", "Event", "To", "Why"],
        (why.tasks_moved || []).map((m) => [String(m.position), taskLink(m.task_id), m.type, agentLink(m.to_agent), m.reason || ""]),
        { numeric: [0], empty: "No task was moved off this agent." }),
    );
    if (marked && !scrolled) {
      scrolled = true;
      document.getElementById(`event-${marked}`)?.scrollIntoView({ block: "center" });
    }
  }, { notFound: (error) => out.replaceChildren(notice(error.message)) });
}
