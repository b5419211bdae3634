// One service's instances: where, which agent, healthy or not; pages of PAGE_SIZE agents
// by id (the API's `after`/`limit`: a service every agent offers is the whole fleet).

import { get, query } from "../api.js";
import { agentLink, h, heading, labels, notice, status, table } from "../dom.js";

const PAGE_SIZE = 50;

export function mount(root, ctx) {
  const state = { pages: [""], next: null }; // the `after` of each page seen so far
  let stop = () => {};
  const out = h("div");
  // aria-disabled, not disabled: a button pressed from the keyboard keeps the focus.
  const previous = h("button", { type: "button", "aria-disabled": "true" }, "Previous page");
  const next = h("button", { type: "button", "aria-disabled": "true" }, "Next page");
  const enable = (button, on) => button.setAttribute("aria-disabled", String(!on));
  root.append(heading(`Service ${ctx.id}`), out, h("div", { class: "pager" }, previous, next));

  function restart() {
    stop();
    enable(previous, false);
    enable(next, false);
    stop = ctx.follow(async (signal) => {
      const after = state.pages[state.pages.length - 1];
      const found = await get(
        `/v1/services/${encodeURIComponent(ctx.id)}${query({ limit: PAGE_SIZE, after })}`, { signal });
      return { index: found.index, page: found.body };
    }, render, { notFound: (error) => out.replaceChildren(notice(error.message)) });
  }

  function render({ page }) {
    const number = state.pages.length;
    const paged = number > 1 || Boolean(page.next_after);
    const instances = page.instances;
    const healthy = instances.filter((i) => i.healthy).length;
    state.next = page.next_after;
    enable(previous, number > 1);
    enable(next, Boolean(page.next_after));
    out.replaceChildren(
      h("p", {}, `${healthy} of ${instances.length} instances healthy${paged ? ` on page ${number}` : ""}`),
      table(number > 1 ? `Instances of ${ctx.id}, page ${number}` : `Instances of ${ctx.id}`,
        ["Agent", "Address", "Status", "Healthy", "Tags", "Labels"],
        instances.map((i) => [agentLink(i.agent_id), `${i.address}:${i.port}`, status(i.status),
          i.healthy ? "yes" : "no", i.tags.join(", "), labels(i.labels)])));
  }

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
