// The event tail: the log's newest events. /v1/events needs an admin token with auth on;
// a refusal is shown as a plain message.

import { get } from "../api.js";
import { agentLink, h, heading, notice, table, taskLink, when } from "../dom.js";
import { identity } from "./detail.js";

const TAIL = 50;

function aggregate(e) {
  if (e.aggregate === "agent") return ["agent ", agentLink(e.aggregate_id)];
  if (e.aggregate === "task") return ["task ", taskLink(e.aggregate_id)];
  return `${e.aggregate} ${e.aggregate_id}`;
}

export function mount(root, ctx) {
  const out = h("div");
  root.append(heading("Events"), out);
  return ctx.follow(async (signal) => {
    const stats = await get("/v1/stats", { signal });
    const after = Math.max(0, stats.body.log_last_position - TAIL);
    const found = await get(`/v1/events?after=${after}&limit=${TAIL}`, { signal });
    return { index: stats.index, events: found.body.events };
  }, ({ events }) => {
    out.replaceChildren(table(`The log's last ${TAIL} events, newest first`,
      ["Position", "Time", "Event", "Of", "By", "Caused by"],
      events.slice().reverse().map((e) => [String(e.position), when(e.recorded_at), e.type, aggregate(e),
        identity(e.identity), e.causation_id ? h("code", {}, e.causation_id) : ""]),
      { numeric: [0], empty: "The log is empty." }));
  }, {
    forbidden: "The event tail needs an admin token: the raw log carries every payload and "
      + "result, so a read token does not reach it. Sign in with a token made by "
      + "orchestrator token create --scope admin to see it.",
  });
}
