// Agents: status, capabilities, labels, load/capacity, last heartbeat; filters by status
// and capability; pages of PAGE_SIZE by id (the API's `after`/`limit`).

import { get, query } from "../api.js";
import { agentLink, h, heading, labels, status, table, when } from "../dom.js";

const PAGE_SIZE = 50;
const STATUSES = ["healthy", "suspect", "dead", "draining", "left"];

export function mount(root, ctx) {
  const state = {
    status: ctx.params.get("status") || "",
    capability: ctx.params.get("capability") || "",
    pages: [""], // the `after` of each page seen so far: Previous goes back one
    next: null,
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
  // aria-disabled, not disabled: a button pressed from the keyboard keeps the focus.
  const previous = h("button", { type: "button", "aria-disabled": "true" }, "Previous page");
  const next = h("button", { type: "button", "aria-disabled": "true" }, "Next page");
  const enable = (button, on) => button.setAttribute("aria-disabled", String(!on));
  root.append(heading("Agents"), form, summary, results, h("div", { class: "pager" }, previous, next));

  function restart() {
    stop();
    state.next = null;
    enable(previous, false);
    enable(next, false);
    const shown = query({ status: state.status, capability: state.capability });
    history.replaceState(null, "", `#/agents${shown}`);
    stop = ctx.follow(async (signal) => {
      const after = state.pages[state.pages.length - 1];
      const path = `/v1/agents${query({ status: state.status, capability: state.capability, limit: PAGE_SIZE, after })}`;
      const [page, stats] = await Promise.all([get(path, { signal }), get("/v1/stats", { signal })]);
      return { index: Math.min(page.index, stats.index), page: page.body, stats: stats.body };
    }, render);
  }

  function render({ page, stats }) {
    const number = state.pages.length;
    const first = (number - 1) * PAGE_SIZE;
    const total = state.status ? stats.agents.by_status[state.status] || 0 : stats.agents.total;
    const scope = state.capability ? "" : ` of ${total}${state.status ? ` ${state.status}` : ""}`;
    const said = page.agents.length
      ? `Page ${number}: agents ${first + 1}–${first + page.agents.length}${scope}`
      : `Page ${number}: no agents match`;
    if (summary.textContent !== said) summary.textContent = said; // live region: changes only
    state.next = page.next_after;
    enable(previous, number > 1);
    enable(next, Boolean(page.next_after));
    results.replaceChildren(table(`Agents, page ${number}`,
      ["Agent", "Status", "Capabilities", "Labels", "Load / capacity", "Last heartbeat", "Incarnation"],
      page.agents.map((a) => [agentLink(a.agent_id), status(a.status), a.capabilities.join(", "),
        labels(a.labels), `${a.load} / ${a.capacity}`, when(a.last_heartbeat_at), String(a.incarnation)]),
      { numeric: [6], wide: [6], empty: "No agents match these filters." }));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.status = select.value;
    state.capability = capability.value.trim();
    state.pages = [""];
    restart();
  });
  select.addEventListener("change", () => form.requestSubmit());
  next.addEventListener("click", () => {
    if (!state.next) return;
    state.pages.push(state.next);
    restart();
  });
  previous.addEventListener("click", () => {
    if (previous.getAttribute("aria-disabled") === "true") return;
    state.pages.pop();
    restart();
  });
  restart();
  return () => stop();
}
