// Schedules: each one's timing (cron, UTC, or an interval), its task's kind, whether it
// is paused, its next run, and the task its last slot submitted.

import { get } from "../api.js";
import { h, heading, table, taskLink } from "../dom.js";

// A time to come, in UTC, and how far off it is (as of this answer of the API).
function upcoming(epoch) {
  if (!epoch) return h("span", { class: "muted" }, "none");
  const at = new Date(epoch * 1000);
  const s = Math.max(0, (at.getTime() - Date.now()) / 1000);
  const off = s < 60 ? `${Math.round(s)} s` : s < 3600 ? `${Math.floor(s / 60)} min`
    : s < 86400 ? `${Math.floor(s / 3600)} h` : `${Math.floor(s / 86400)} d`;
  const utc = at.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  return h("span", { title: at.toISOString() }, `${utc} (in ${off})`);
}

export function mount(root, ctx) {
  const out = h("div");
  root.append(heading("Schedules"), out);
  return ctx.follow(async (signal) => {
    const found = await get("/v1/schedules?limit=1000", { signal });
    return { index: found.index, schedules: found.body.schedules };
  }, ({ schedules }) => {
    out.replaceChildren(table("Schedules",
      ["Schedule", "Owner", "When (UTC)", "Kind", "Status", "Next run", "Last task", "Fired",
        "Skipped"],
      schedules.map((s) => [s.name, s.owner, s.cron ? `cron ${s.cron}` : `every ${s.every_s}s`,
        s.task.kind, s.status, s.status === "paused" ? h("span", { class: "muted" }, "paused")
          : upcoming(s.next_due),
        s.last_task_id ? taskLink(s.last_task_id) : h("span", { class: "muted" }, "none"),
        String(s.fired), String(s.skipped)]),
      { numeric: [7, 8], empty: "No schedules." }));
  });
}
