// One service's instances: where, which agent, healthy or not; pages of PAGE_SIZE agents
// by id (the API's `after`/`limit`: a service every agent offers is the whole fleet).

import { get, query } from "../api.js";
import { agentLink, h, heading, labels, notice, status, table } from "../dom.js";
import { pager } from "../pager.js";

const PAGE_SIZE = 50;

export function mount(root, ctx) {
  let stop = () => {};
  const out = h("div");
  const pages = pager("", restart);
  root.append(heading(`Service ${ctx.id}`), out, pages.element);

  function restart() {
    stop();
    pages.loading();
    stop = ctx.follow(async (signal) => {
      const path = `/v1/services/${encodeURIComponent(ctx.id)}${query({ limit: PAGE_SIZE, after: pages.after })}`;
      const found = await get(path, { signal });
      return { index: found.index, page: found.body };
    }, render, { notFound: (error) => out.replaceChildren(notice(error.message)) });
  }

  function render({ page }) {
    const number = pages.number;
    const paged = number > 1 || Boolean(page.next_after);
    const instances = page.instances;
    const healthy = instances.filter((i) => i.healthy).length;
    pages.shown(page.next_after);
    out.replaceChildren(
      h("p", {}, `${healthy} of ${instances.length} instances healthy${paged ? ` on page ${number}` : ""}`),
      table(number > 1 ? `Instances of ${ctx.id}, page ${number}` : `Instances of ${ctx.id}`,
        ["Agent", "Address", "Status", "Healthy", "Tags", "Labels"],
        instances.map((i) => [agentLink(i.agent_id), `${i.address}:${i.port}`, status(i.status),
          i.healthy ? "yes" : "no", i.tags.join(", "), labels(i.labels)])));
  }

  restart();
  return () => stop();
}
