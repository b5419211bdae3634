// One service's instances: where, which agent, healthy or not.

import { get } from "../api.js";
import { agentLink, h, heading, labels, notice, status, table } from "../dom.js";

export function mount(root, ctx) {
  const out = h("div");
  root.append(heading(`Service ${ctx.id}`), out);
  return ctx.follow(async (signal) => {
    const found = await get(`/v1/services/${encodeURIComponent(ctx.id)}`, { signal });
    return { index: found.index, instances: found.body.instances };
  }, ({ instances }) => {
    const healthy = instances.filter((i) => i.healthy).length;
    out.replaceChildren(h("p", {}, `${healthy} of ${instances.length} instances healthy`),
      table(`Instances of ${ctx.id}`, ["Agent", "Address", "Status", "Healthy", "Tags", "Labels"],
        instances.map((i) => [agentLink(i.agent_id), `${i.address}:${i.port}`, status(i.status),
          i.healthy ? "yes" : "no", i.tags.join(", "), labels(i.labels)])));
  }, { notFound: (error) => out.replaceChildren(notice(error.message)) });
}
