// Small DOM helpers: elements, semantic tables, times. No framework.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function link(href, text) {
  return h("a", { href }, text);
}

export const agentHref = (id) => `#/agents/${encodeURIComponent(id)}`;
export const taskHref = (id) => `#/tasks/${encodeURIComponent(id)}`;
export const agentLink = (id) => (id ? link(agentHref(id), id) : h("span", { class: "muted" }, "none"));
export const taskLink = (id) => link(taskHref(id), id);

// A status as the API said it; while the page is disconnected it reads "unknown (last
// seen ...)" instead (stale.js), its value kept in data-value.
export function status(value) {
  return h("span", { class: `status status-${value}`, "data-value": value }, value);
}

// Running of capacity and the load the agent reports, as the CLI prints them: "2/3 67%".
export function load(agent) {
  return `${agent.running.length}/${agent.capacity} ${Math.round(agent.load * 100)}%`;
}

// A table with a caption and column headers; `rows` are arrays of cells (nodes or text),
// or {cells, attrs} for a row with attributes. `numeric` lists right-aligned columns.
export function table(caption, headers, rows, { numeric = [], empty = "None.", wide = [] } = {}) {
  const cls = (i) => [numeric.includes(i) ? "num" : "", wide.includes(i) ? "wide" : ""].join(" ").trim() || null;
  const body = rows.length
    ? rows.map((row) => {
        const { cells, attrs } = Array.isArray(row) ? { cells: row, attrs: {} } : row;
        return h("tr", attrs, cells.map((c, i) => h("td", { class: cls(i) }, c)));
      })
    : [h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, empty))];
  return h("div", { class: "scroll" },
    h("table", {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headers.map((t, i) => h("th", { scope: "col", class: cls(i) }, t)))),
      h("tbody", {}, body)));
}

export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

export function when(iso) {
  if (!iso) return h("span", { class: "muted" }, "never");
  return h("time", { datetime: iso, title: iso }, whenText(iso));
}

function whenText(iso) {
  const at = new Date(iso);
  return `${ago(at)} (${at.toLocaleTimeString()})`;
}

// Ages move on between two answers of the API (and while none comes): say them again.
export function refreshTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const text = whenText(el.getAttribute("datetime"));
    if (el.textContent !== text) el.textContent = text;
  }
}

export function ago(date) {
  const s = (Date.now() - date.getTime()) / 1000;
  if (s < -0.5) return `in ${ahead(-s)}`; // a time to come: a retry, a rate's next token
  if (s < 0.5) return "just now";
  if (s < 60) return `${s.toFixed(1)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function ahead(s) {
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

export function labels(map) {
  const entries = Object.entries(map || {});
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(", ") : "";
}

export function notice(text, kind = "") {
  return h("p", { class: `notice ${kind}`.trim(), role: kind === "error" ? "alert" : null }, text);
}

export function heading(text) {
  document.title = `${text} · Orchestrator`;
  return h("h1", { tabindex: "-1" }, text);
}
