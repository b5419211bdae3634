// Limits (flow control, docs/flow-control.md): every limit an operator set, with what
// each concurrency key uses now (running of its limit, waiting), and the admission
// bounds against the unfinished tasks in all. Read-only: limits are set by an operator's
// command over NATS (the CLI's `limits set`).

import { get } from "../api.js";
import { facts, h, heading, table } from "../dom.js";

// Keys first (what is held now), then the default, fairness weights, submitters' bounds.
const SCOPES = ["key", "default", "fairness", "submitter"];

const none = () => h("span", { class: "muted" }, "—");

// A number as the operator would write it: 50,000, 600, 0.5, 16.67 (no float noise).
function number(value) {
  const near = Number.isInteger(value) ? value : Number(value.toPrecision(6));
  return near.toLocaleString("en", { maximumFractionDigits: 4 });
}

// Placements per second as per minute, the CLI's unit: 10/s is "600/min".
function rate(perSecond) {
  if (typeof perSecond !== "number") return none();
  return h("span", { title: `${number(perSecond)} per second` }, `${number(perSecond * 60)}/min`);
}

function value(v) {
  return typeof v === "number" ? number(v) : none();
}

// For a key: "2/4" (running of its concurrency), marked when at its limit; a key with
// only a rate has no bound on what runs.
function running(row) {
  if (row.scope !== "key") return none();
  const count = row.running ?? 0;
  if (typeof row.concurrency !== "number") {
    return h("span", { title: "no concurrency limit" }, `${count}`, h("span", { class: "muted" }, " (no bound)"));
  }
  const full = count >= row.concurrency;
  return h("span", { class: full ? "at-limit" : null, title: full ? "at its limit: its waiting tasks wait" : null },
    `${count}/${row.concurrency}`);
}

function bound(n) {
  return n ? `at most ${n.toLocaleString("en")}` : "no bound";
}

function admission(found, limits) {
  const own = limits.filter((row) => row.scope === "submitter").length;
  return facts([
    ["Unfinished tasks", `${found.unfinished_tasks.toLocaleString("en")} in all, ${bound(found.max_unfinished_tasks)}`],
    ["Per submitter", `${bound(found.max_unfinished_per_submitter)} unfinished each`
      + (own ? ` (${own} submitter${own === 1 ? " has its" : "s have their"} own, above)` : "")],
  ]);
}

export function mount(root, ctx) {
  const out = h("div");
  root.append(heading("Limits"),
    h("p", { class: "muted" }, "Read-only: an operator sets limits over NATS, with ",
      h("code", {}, "orchestrator limits set KEY --concurrency N --rate 600/min"),
      " (no value lifts the limit; ", h("code", {}, "--scope default|fairness|submitter"),
      " for the others). See docs/flow-control.md."),
    out);
  return ctx.follow(async (signal) => {
    const found = await get("/v1/limits", { signal });
    return { index: found.index, limits: found.body.limits, admission: found.body.admission };
  }, ({ limits, admission: bounds }) => {
    const rows = [...limits].sort((a, b) => SCOPES.indexOf(a.scope) - SCOPES.indexOf(b.scope)
      || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const defaults = limits.find((row) => row.scope === "default");
    out.replaceChildren(
      table("Limits", ["Scope", "Name", "Concurrency", "Rate", "Burst", "Weight", "Max unfinished",
        "Running", "Waiting"],
      rows.map((row) => ({
        cells: [row.scope, row.name, value(row.concurrency), rate(row.rate_per_s),
          value(row.burst), value(row.weight), value(row.max_unfinished), running(row),
          row.scope === "key" ? String(row.waiting ?? 0) : none()],
        attrs: { "data-limit": `${row.scope}:${row.name}` },
      })),
      { numeric: [2, 3, 4, 5, 6, 7, 8], empty: "No limits set: every concurrency key is unbounded and every fairness key weighs 1." }),
      h("p", { class: "muted" }, defaults
        ? `A key with no limit of its own here takes the default concurrency, ${defaults.concurrency}.`
        : "A key with no limit of its own here is unbounded (no default concurrency is set)."),
      h("h2", {}, "Admission"),
      admission(bounds, limits),
    );
  });
}
