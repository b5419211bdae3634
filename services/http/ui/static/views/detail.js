// What the agent and task pages share: detector readings and event links.

import { agentHref, h, link } from "../dom.js";

// A link to an agent's event: the agent's page with that event's row marked.
export function agentEventLink(agentId, position, text) {
  return link(`${agentHref(agentId)}?event=${position}`, text || `event ${position}`);
}

export function seconds(value) {
  return typeof value === "number" ? `${value.toFixed(2)} s` : "?";
}

// "silence 1.02 s against dead_after 1.0 s; last heartbeat #7 sent at ..."
export function detectorText(d) {
  if (!d) return "";
  const limit = "dead_after_s" in d ? `dead_after ${seconds(d.dead_after_s)}`
    : "suspect_after_s" in d ? `suspect_after ${seconds(d.suspect_after_s)}` : "";
  const parts = [`silence ${seconds(d.silence_s)}${limit ? ` against ${limit}` : ""}`];
  if (d.last_heartbeat_seq) {
    parts.push(`last heartbeat heard: #${d.last_heartbeat_seq}${d.last_heartbeat_at ? ` sent at ${d.last_heartbeat_at}` : ""}`);
  } else {
    parts.push("no heartbeat heard since registering");
  }
  return parts.join("; ");
}

export function identity(value) {
  return value ? value : h("span", { class: "muted" }, "—");
}
