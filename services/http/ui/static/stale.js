// While the page is disconnected what it shows is the last state seen, not the current
// one: a banner says since when, and each status reads "unknown (last seen healthy)"
// (ages keep growing: dom.js refreshTimes). The next answer renders afresh.

import { h } from "./dom.js";

export function markStale(root, since) {
  if (root.dataset.stale === "true") return;
  root.dataset.stale = "true";
  const banner = h("p", { class: "notice error stale-banner" },
    `Disconnected from the orchestrator at ${since.toLocaleTimeString()}: what follows is the last state seen, not the current one.`);
  const title = root.querySelector("h1");
  if (title) title.after(banner);
  else root.prepend(banner);
  for (const el of root.querySelectorAll(".status[data-value]")) {
    el.textContent = `unknown (last seen ${el.dataset.value})`;
    el.classList.add("status-unknown");
  }
}

export function clearStale(root) {
  if (root.dataset.stale !== "true") return;
  delete root.dataset.stale;
  for (const el of root.querySelectorAll(".stale-banner")) el.remove();
  for (const el of root.querySelectorAll(".status-unknown")) {
    el.textContent = el.dataset.value;
    el.classList.remove("status-unknown");
  }
}
