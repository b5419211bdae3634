// What if: the recorded heartbeats replayed under other dead_after settings
// (/v1/what-if), as a chart of the false deaths each would avoid or add, and a table of
// the numbers. The replay reads the whole agent log, so it runs when the page opens and
// on "Replay", not at every change of the log. It needs an admin token with auth on.

import { get } from "../api.js";
import { h, heading, notice, table } from "../dom.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const HEIGHT = 280;
const PAD = { left: 48, right: 16, top: 16, bottom: 44 };
const SERIES = [
  ["avoided", "False deaths avoided", "avoided"],
  ["added", "Deaths added", "added"],
];
const TITLE = "False deaths avoided and added against dead_after";

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

const seconds = (v) => `${Number(v.toFixed(3))} s`;

// Ticks of the y axis: whole numbers from 0 to the top, at most 5 of them.
function yTicks(top) {
  const step = Math.max(1, Math.ceil(top / 4));
  const ticks = [];
  for (let v = 0; v <= top; v += step) ticks.push(v);
  return ticks;
}

export function chart(points, inForce) {
  const xs = points.map((p) => p.dead_after);
  const lo = Math.log(Math.min(...xs, inForce ?? Infinity));
  const hi = Math.log(Math.max(...xs, inForce ?? 0));
  const span = hi - lo || 1;
  const x = (v) => PAD.left + (points.length === 1 && inForce == null
    ? (WIDTH - PAD.left - PAD.right) / 2
    : ((Math.log(v) - lo) / span) * (WIDTH - PAD.left - PAD.right));
  const top = Math.max(1, ...points.flatMap((p) => [p.avoided, p.added]));
  const y = (v) => HEIGHT - PAD.bottom - (v / top) * (HEIGHT - PAD.top - PAD.bottom);
  const desc = points.map((p) => `dead_after ${seconds(p.dead_after)}: ${p.avoided} avoided, ${p.added} added`).join("; ");
  const svg = s("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-labelledby": "whatif-title whatif-desc",
    class: "chart",
  }, s("title", { id: "whatif-title" }, TITLE), s("desc", { id: "whatif-desc" }, desc));
  for (const v of yTicks(top)) {
    svg.append(s("line", { class: "grid", x1: PAD.left, x2: WIDTH - PAD.right, y1: y(v), y2: y(v) }),
      s("text", { class: "tick", x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" }, v));
  }
  svg.append(s("line", { class: "axis", x1: PAD.left, x2: WIDTH - PAD.right, y1: y(0), y2: y(0) }));
  for (const v of xs) {
    svg.append(s("text", { class: "tick", x: x(v), y: HEIGHT - PAD.bottom + 16, "text-anchor": "middle" }, Number(v.toFixed(3))));
  }
  svg.append(s("text", { class: "label", x: (PAD.left + WIDTH - PAD.right) / 2, y: HEIGHT - 6, "text-anchor": "middle" },
    "dead_after (s, log scale)"));
  if (inForce != null) {
    svg.append(s("line", { class: "in-force", x1: x(inForce), x2: x(inForce), y1: PAD.top, y2: y(0) }),
      s("text", { class: "tick", x: x(inForce) + 4, y: PAD.top + 10 }, "in force"));
  }
  for (const [key, label, cls] of SERIES) {
    const group = s("g", { class: `series series-${cls}`, "data-series": key });
    group.append(s("polyline", { points: points.map((p) => `${x(p.dead_after)},${y(p[key])}`).join(" ") }));
    for (const p of points) {
      group.append(s("circle", { cx: x(p.dead_after), cy: y(p[key]), r: 4 },
        s("title", {}, `${label} at dead_after ${seconds(p.dead_after)}: ${p[key]}`)));
    }
    svg.append(group);
  }
  const legend = h("ul", { class: "legend" }, SERIES.map(([, label, cls]) =>
    h("li", { class: `key-${cls}` }, label)));
  return h("figure", { class: "chart" }, svg, legend);
}

function parseValues(text) {
  const parts = text.split(/[\s,]+/).filter(Boolean);
  if (!parts.length) return { values: null };
  const values = parts.map(Number);
  if (parts.length > 10 || values.some((v) => !(v > 0 && v <= 3600))) {
    return { error: "Give at most 10 values of dead_after, each more than 0 and at most 3600 seconds." };
  }
  return { values };
}

export function mount(root, ctx) {
  const input = h("input", { name: "dead_after", type: "text", inputmode: "decimal", autocomplete: "off", size: 30 });
  const problem = h("p", { class: "muted", id: "whatif-problem", role: "alert" });
  const hint = h("p", { class: "muted", id: "whatif-hint" });
  const form = h("form", { class: "filters", "aria-label": "Replay under other settings" },
    h("label", {}, "dead_after values (seconds, comma-separated)", input),
    h("button", { type: "submit" }, "Replay"));
  const out = h("div");
  root.append(heading("What if"),
    h("p", {}, "The recorded heartbeats and deaths replayed under other dead_after settings: "
      + "the false deaths (an agent declared dead, then heard from again by the same process; "
      + "one killed and started again is a real death) each would have avoided, and the deaths "
      + "it would have added."),
    form, problem, hint, out);
  let shown = "";
  input.addEventListener("input", () => {
    hint.textContent = shown && input.value.trim() !== shown
      ? `The chart below is for dead_after ${shown}: press Replay to replay under the values typed.` : "";
  });

  let stop = () => {};
  const start = (values) => {
    stop();
    let cached = null;
    // What is shown is always what was replayed: an earlier replay's chart does not stay
    // under values typed since, and the field says the values of the chart below it.
    out.replaceChildren(h("p", { class: "muted" }, values
      ? `Replaying under dead_after ${values.join(", ")} s…` : "Replaying…"));
    const path = values ? `/v1/what-if?dead_after=${values.join(",")}` : "/v1/what-if";
    stop = ctx.follow(async (signal) => {
      if (cached) {
        // Replayed once: later log changes only move the index (Replay replays again).
        const found = await get("/v1/stats", { signal });
        return { ...cached, index: found.index, same: true };
      }
      const found = await get(path, { signal });
      cached = { body: found.body, at: new Date() };
      return { ...cached, index: found.index, same: false };
    }, ({ body, at, same }) => {
      if (same) return;
      const inForce = body.settings ? body.settings.dead_after : null;
      shown = body.points.map((p) => p.dead_after).join(", ");
      input.value = shown;
      hint.textContent = "";
      const recorded = body.recorded_dead_after.length
        ? `Recorded deaths were declared under dead_after ${body.recorded_dead_after.map(seconds).join(", ")}.`
        : "The log holds no recorded death.";
      out.replaceChildren(
        h("p", {}, inForce != null ? `In force: dead_after ${seconds(inForce)}, suspect_after ${seconds(body.settings.suspect_after)}. ` : "",
          recorded, ` Replayed at ${at.toLocaleTimeString()}.`),
        chart(body.points, inForce),
        table("What if, by dead_after", ["dead_after (s)", "Recorded deaths", "False deaths recorded",
          "Avoided", "Added", "Later", "Earlier"],
        body.points.map((p) => ({
          cells: [String(p.dead_after), String(p.recorded_deaths), String(p.false_deaths_recorded),
            String(p.avoided), String(p.added), String(p.later), String(p.earlier)],
          attrs: { "aria-current": p.dead_after === inForce ? "true" : null },
        })), { numeric: [0, 1, 2, 3, 4, 5, 6] }));
    }, {
      forbidden: "The what-if chart needs an admin token: it replays the whole agent log and the "
        + "heartbeat stream, so a read token does not reach it. Sign in with a token made by "
        + "orchestrator token create --scope admin to see it.",
    });
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const { values, error } = parseValues(input.value);
    problem.textContent = error || "";
    if (error) return;
    start(values);
  });
  start(null);
  return () => stop();
}
