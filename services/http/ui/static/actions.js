// The dashboard's actions: drain and undrain an agent, cancel a task. Each is a POST the
// API runs through the same command handlers as NATS; it needs an admin token (with auth
// on), and a read token is told so here in plain words.

import { post } from "./api.js";
import { h } from "./dom.js";

const ADMIN_NEEDED = "needs an admin token: this token may only read. Sign in with one made by "
  + "orchestrator token create --scope admin to act from the dashboard.";

// A group of buttons and the line that says how the last action went.
export function actionBar(label) {
  const buttons = h("div", { class: "actions", role: "group", "aria-label": label });
  const said = h("p", { class: "action-result", "aria-live": "polite" });
  let shown = null;
  return {
    element: h("div", { class: "action-bar" }, buttons, said),
    // The buttons for this state (rebuilt only when it changes: focus stays put).
    show(key, items) {
      if (key === shown) return;
      shown = key;
      buttons.replaceChildren(...items.map(([text, run]) =>
        h("button", { type: "button", onclick: (event) => act(event.target, said, text, run) }, text)));
    },
  };
}

async function act(button, said, text, run) {
  button.disabled = true;
  said.className = "action-result muted";
  said.textContent = `${text}: sending…`;
  try {
    said.textContent = await run();
    said.className = "action-result";
  } catch (error) {
    said.className = "action-result notice error";
    said.textContent = error.status === 403 ? `${text} ${ADMIN_NEEDED}`
      : `${text} was refused: ${error.message}${error.status ? ` (HTTP ${error.status})` : ""}`;
  } finally {
    button.disabled = false;
  }
}

// What an action's reply says: the new status, or that nothing changed.
export async function send(path, payload, what) {
  const { body } = await post(path, payload);
  return body.position != null ? `${what}: ${body.status} (event ${body.position}).`
    : `${what}: already ${body.status}, nothing to change.`;
}
