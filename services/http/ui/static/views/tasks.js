// Tasks by submission order: filters by status, agent and kind; pages by `next_after`.

import { get, query } from "../api.js";
import { agentLink, h, heading, status, table, taskLink, when } from "../dom.js";

const PAGE_SIZE = 50;
const STATUSES = ["pending", "assigned", "running", "retry_wait", "completed", "dead_lettered", "cancelled"];

export function mount(root, ctx) {
  const state = {
    status: ctx.params.get("status") || "",
    agent: ctx.params.get("agent") || "",
    kind: ctx.params.get("kind") || "",
    pages: [0],
    next: null,
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
  // aria-disabled, not disabled: a button pressed from the keyboard keeps the focus.
  const previous = h("button", { type: "button", "aria-disabled": "true" }, "Previous page");
  const next = h("button", { type: "button", "aria-disabled": "true" }, "Next page");
  const enable = (button, on) => button.setAttribute("aria-disabled", String(!on));
  root.append(heading("Tasks"), form, summary, results, h("div", { class: "pager" }, previous, next));

  const filters = () => ({ status: state.status, agent: state.agent, kind: state.kind });

  function restart() {
    stop();
    state.next = null;
    enable(previous, false);
    enable(next, false);
    history.replaceState(null, "", `#/tasks${query(filters())}`);
    stop = ctx.follow(async (signal) => {
      const after = state.pages[state.pages.length - 1];
      const page = await get(`/v1/tasks${query({ ...filters(), limit: PAGE_SIZE, after })}`, { signal });
      return { index: page.index, page: page.body };
    }, render);
  }

  function render({ page }) {
    const number = state.pages.length;
    const first = (number - 1) * PAGE_SIZE;
    const said = page.tasks.length
      ? `Page ${number}: tasks ${first + 1}–${first + page.tasks.length}`
      : `Page ${number}: no tasks match`;
    if (summary.textContent !== said) summary.textContent = said; // live region: changes only
    state.next = page.next_after;
    enable(previous, number > 1);
    enable(next, Boolean(page.next_after));
    results.replaceChildren(table(`Tasks, page ${number}`,
      ["Task", "Kind", "Status", "Agent", "Attempt", "Progress", "Updated"],
      page.tasks.map((t) => [taskLink(t.task_id), t.kind, status(t.status), agentLink(t.agent_id),
        `${t.attempt} of ${t.max_attempts}`, `${Math.round(t.progress * 100)}%`, when(t.updated_at)]),
      { empty: "No tasks match these filters." }));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    Object.assign(state, { status: select.value, agent: agent.value.trim(), kind: kind.value.trim(), pages: [0] });
    restart();
  });
  select.addEventListener("change", () => form.requestSubmit());
  next.addEventListener("click", () => { if (state.next) { state.pages.push(state.next); restart(); } });
  previous.addEventListener("click", () => { if (previous.getAttribute("aria-disabled") === "true") return;
    state.pages.pop();
    restart();
  });
  restart();
  return () => stop();
}
