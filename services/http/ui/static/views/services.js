// Services with their healthy and total instance counts.

import { get } from "../api.js";
import { h, heading, link, table } from "../dom.js";

export function mount(root, ctx) {
  const out = h("div");
  root.append(heading("Services"), out);
  return ctx.follow(async (signal) => {
    const found = await get("/v1/services", { signal });
    return { index: found.index, services: found.body.services };
  }, ({ services }) => {
    const names = Object.keys(services).sort();
    out.replaceChildren(table("Services", ["Service", "Healthy", "Instances", "Tags"],
      names.map((s) => [link(`#/services/${encodeURIComponent(s)}`, s), String(services[s].healthy),
        String(services[s].instances), services[s].tags.join(", ")]),
      { numeric: [1, 2], empty: "No services registered." }));
  });
}
