// Agents: status, capabilities, labels, running/capacity and load, last heartbeat; filters by status
// and capability; pages of PAGE_SIZE by id (the API's `after`/`limit`).

import { get, query } from "../api.js";
import { agentLink, h, heading, labels, load, status, table, when } from "../dom.js";
import { pager } from "../pager.js";

const PAGE_SIZE = 50;
const STATUSES = ["healthy", "suspect", "unresponsive", "dead", "draining", "left"];

export function mount(root, ctx) {
  const state = {
    status: ctx.params.get("status") || "",
    capability: ctx.params.get("capability") || "",
  };
  let stop = () => {};
  const select = h("select", { name: "status" },
    h("option", { value: "" }, "any"), STATUSES.map((s) => h("option", { value: s }, s)));
  select.value = state.status;
  const capability = h("input", { name: "capability", type: "search", value: state.capability });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter agents" },
    h("label", {}, "Status", select),
    h("label", {}, "Capability", capability),
    h("button", { type: "submit" }, "Apply filters"));
  const summary = h("p", { class: "muted", "aria-live": "polite" });
  const results = h("div");
  const pages = pager("", restart);
  root.append(heading("Agents"), form, summary, results, pages.element);

  function restart() {
    stop();
    pages.loading();
    const shown = query({ status: state.status, capability: state.capability });
    history.replaceState(null, "", `#/agents${shown}`);
    stop = ctx.follow(async (signal) => {
      const path = `/v1/agents${query({ status: state.status, capability: state.capability, limit: PAGE_SIZE, after: pages.after })}`;
      const [page, stats] = await Promise.all([get(path, { signal }), get("/v1/stats", { signal })]);
      return { index: Math.min(page.index, stats.index), page: page.body, stats: stats.body };
    }, render);
  }

  function render({ page, stats }) {
    const number = pages.number;
    const first = (number - 1) * PAGE_SIZE;
    const total = state.status ? stats.agents.by_status[state.status] || 0 : stats.agents.total;
    const scope = state.capability ? "" : ` of ${total}${state.status ? ` ${state.status}` : ""}`;
    const said = page.agents.length
      ? `Page ${number}: agents ${first + 1}–${first + page.agents.length}${scope}`
      : `Page ${number}: no agents match`;
    if (summary.textContent !== said) summary.textContent = said; // live region: changes only
    pages.shown(page.next_after);
    results.replaceChildren(table(`Agents, page ${number}`,
      ["Agent", "Status", "Capabilities", "Labels", "Running / capacity, load", "Last heartbeat", "Incarnation"],
      page.agents.map((a) => [agentLink(a.agent_id), status(a.status), a.capabilities.join(", "),
        labels(a.labels), load(a), when(a.last_heartbeat_at), String(a.incarnation)]),
      { numeric: [6], wide: [6], empty: "No agents match these filters." }));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.status = select.value;
    state.capability = capability.value.trim();
    pages.rewind();
    restart();
  });
  select.addEventListener("change", () => form.requestSubmit());
  restart();
  return () => stop();
}
