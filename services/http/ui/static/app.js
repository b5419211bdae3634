// The dashboard shell: the router (the URL's fragment: #/agents/a1?event=12), the pause
// switch, the connection indicator and the token form.

import { authOn, clearToken, setToken, token } from "./api.js";
import { h, heading, notice, refreshTimes } from "./dom.js";
import { follow, live, watchConnection } from "./live.js";
import { clearStale, markStale } from "./stale.js";
import * as overview from "./views/overview.js";
import * as agents from "./views/agents.js";
import * as agent from "./views/agent.js";
import * as tasks from "./views/tasks.js";
import * as task from "./views/task.js";
import * as services from "./views/services.js";
import * as service from "./views/service.js";
import * as events from "./views/events.js";
import * as whatif from "./views/whatif.js";
import * as schedules from "./views/schedules.js";
import * as limits from "./views/limits.js";

const ROUTES = [
  [/^\/?$/, overview, "#/"],
  [/^\/agents$/, agents, "#/agents"],
  [/^\/agents\/([^/]+)$/, agent, "#/agents"],
  [/^\/tasks$/, tasks, "#/tasks"],
  [/^\/tasks\/([^/]+)$/, task, "#/tasks"],
  [/^\/services$/, services, "#/services"],
  [/^\/services\/([^/]+)$/, service, "#/services"],
  [/^\/events$/, events, "#/events"],
  [/^\/what-if$/, whatif, "#/what-if"],
  [/^\/schedules$/, schedules, "#/schedules"],
  [/^\/limits$/, limits, "#/limits"],
];

const main = document.getElementById("main");
const pause = document.getElementById("pause");
const signout = document.getElementById("signout");
const connection = document.getElementById("connection");
let stop = () => {};
let firstRoute = true;

// A link /ui/#token=... hands the page a token; the fragment never reaches the server.
// It is kept for this tab only and removed from the address bar at once.
if (location.hash.startsWith("#token=")) {
  setToken(decodeURIComponent(location.hash.slice("#token=".length)));
  history.replaceState(null, "", `${location.pathname}#/`);
}

function showLogin(message) {
  stop();
  main.replaceChildren(
    heading("Sign in"),
    notice(message || "This orchestrator's read API needs a token (it runs with auth on)."),
    h("p", {}, "On the orchestrator's machine, ", h("code", {}, "cat .orchestrator/auth/read.token"),
      " prints the local read token; ", h("code", {}, "orchestrator token create --scope read"),
      " makes another. The token stays in this tab only."),
    h("form", {
      class: "login",
      onsubmit: (event) => {
        event.preventDefault();
        const value = new FormData(event.target).get("token").trim();
        if (!value) return;
        setToken(value);
        route();
      },
    },
    h("label", {}, "Token", h("input", { name: "token", type: "password", autocomplete: "off", required: true })),
    h("button", { type: "submit" }, "Sign in")));
  main.querySelector("input").focus();
  updateSignout();
}

function updateSignout() {
  signout.hidden = !token();
}

// What a view gets: follow() bound to the API refusals every view shows the same way.
const context = {
  follow(load, render, { notFound, forbidden } = {}) {
    return follow(load, render, (error) => {
      if (error.status === 401) {
        showLogin(token() ? "The token was refused (unknown, revoked or mistyped). Enter another." : undefined);
        return false;
      }
      if (notFound && error.status === 404) { notFound(error); return true; }
      if (forbidden && error.status === 403) { main.append(notice(forbidden)); return false; }
      main.append(notice(`${error.message} (HTTP ${error.status})`, "error"));
      return false;
    });
  },
};

function route() {
  stop();
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, search] = raw.split("?");
  const params = new URLSearchParams(search || "");
  for (const [pattern, view, nav] of ROUTES) {
    const match = pattern.exec(path);
    if (!match) continue;
    for (const a of document.querySelectorAll("#nav a")) {
      if (a.getAttribute("href") === nav) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    main.replaceChildren();
    delete main.dataset.stale; // a new page: marked again if still disconnected
    stop = view.mount(main, { ...context, id: match[1] && decodeURIComponent(match[1]), params });
    if (!firstRoute) main.querySelector("h1")?.focus();
    firstRoute = false;
    updateSignout();
    return;
  }
  main.replaceChildren(heading("Not found"), notice(`The dashboard has no page ${path}.`));
}

// Each change of connection: what is shown is marked stale while disconnected.
live.subscribe((state) => {
  if (state.connection === "disconnected") markStale(main, new Date());
  else if (state.connection === "live") clearStale(main);
});
pause.addEventListener("click", () => live.set({ paused: !live.paused }));
signout.addEventListener("click", () => { clearToken(); showLogin("Signed out."); });
live.subscribe((state) => {
  pause.setAttribute("aria-pressed", String(state.paused));
  const shown = state.paused ? "paused" : state.connection;
  if (connection.dataset.state === shown && connection.textContent) return; // no re-announcing
  connection.dataset.state = shown;
  connection.textContent = {
    paused: "Paused",
    live: "Live",
    connecting: "Connecting…",
    disconnected: "Disconnected, retrying…",
  }[shown];
});
// The skip link focuses the content without touching the fragment (the router's).
document.getElementById("skip").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
window.addEventListener("hashchange", route);
setInterval(() => refreshTimes(main), 1000);
watchConnection();
// With auth on and no token yet, ask for one before any request the API would refuse.
if (!token() && await authOn()) showLogin();
else route();
