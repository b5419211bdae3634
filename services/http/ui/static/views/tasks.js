// Tasks, newest first: filters by status, agent and kind; pages back in time by
// `next_after` (the API's order=newest&before=).

import { get, query } from "../api.js";
import { agentLink, h, heading, status, table, taskLink, when } from "../dom.js";
import { pager } from "../pager.js";

const PAGE_SIZE = 50;
const STATUSES = ["pending", "scheduled", "assigned", "running", "retry_wait", "completed", "dead_lettered", "cancelled"];

export function mount(root, ctx) {
  const state = {
    status: ctx.params.get("status") || "",
    agent: ctx.params.get("agent") || "",
    kind: ctx.params.get("kind") || "",
  };
  let stop = () => {};
  const select = h("select", { name: "status" },
    h("option", { value: "" }, "any"), STATUSES.map((s) => h("option", { value: s }, s)));
  select.value = state.status;
  const agent = h("input", { name: "agent", type: "search", value: state.agent });
  const kind = h("input", { name: "kind", type: "search", value: state.kind });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter tasks" },
    h("label", {}, "Status", select), h("label", {}, "Agent", agent), h("label", {}, "Kind", kind),
    h("button", { type: "submit" }, "Apply filters"));
  const summary = h("p", { class: "muted", "aria-live": "polite" });
  const results = h("div");
  const pages = pager("", restart);
  root.append(heading("Tasks"), form, summary, results, pages.element);

  const filters = () => ({ status: state.status, agent: state.agent, kind: state.kind });

  function restart() {
    stop();
    pages.loading();
    history.replaceState(null, "", `#/tasks${query(filters())}`);
    stop = ctx.follow(async (signal) => {
      const page = await get(`/v1/tasks${query({ ...filters(), order: "newest", limit: PAGE_SIZE, before: pages.after })}`, { signal });
      return { index: page.index, page: page.body };
    }, render);
  }

  function render({ page }) {
    const number = pages.number;
    const first = (number - 1) * PAGE_SIZE;
    const said = page.tasks.length
      ? `Page ${number}: tasks ${first + 1}–${first + page.tasks.length}`
      : `Page ${number}: no tasks match`;
    if (summary.textContent !== said) summary.textContent = said; // live region: changes only
    pages.shown(page.next_after);
    results.replaceChildren(table(`Tasks, page ${number}, newest first`,
      ["Task", "Kind", "Status", "Agent", "Attempt", "Progress", "Updated"],
      page.tasks.map((t) => [taskLink(t.task_id), t.kind, status(t.status), agentLink(t.agent_id),
        `${t.attempt} of ${t.max_attempts}`, `${Math.round(t.progress * 100)}%`, when(t.updated_at)]),
      { empty: "No tasks match these filters." }));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    Object.assign(state, { status: select.value, agent: agent.value.trim(), kind: kind.value.trim() });
    pages.rewind();
    restart();
  });
  select.addEventListener("change", () => form.requestSubmit());
  restart();
  return () => stop();
}
