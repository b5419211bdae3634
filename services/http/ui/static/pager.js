// Previous and Next between the pages of a list the API answers a page at a time: each
// page is asked for `after` the cursor its predecessor gave (`next_after`).

import { h } from "./dom.js";

// `first`: the cursor of the first page; `turned`: called when a button turns the page.
export function pager(first, turned) {
  const cursors = [first]; // of each page seen so far: Previous goes back one
  let following = null; // the shown page's next_after; null while a page loads
  // aria-disabled, not disabled: a button pressed from the keyboard keeps the focus.
  const previous = h("button", { type: "button", "aria-disabled": "true" }, "Previous page");
  const next = h("button", { type: "button", "aria-disabled": "true" }, "Next page");
  const enable = (button, on) => button.setAttribute("aria-disabled", String(!on));
  next.addEventListener("click", () => {
    if (!following) return;
    cursors.push(following);
    turned();
  });
  previous.addEventListener("click", () => {
    if (previous.getAttribute("aria-disabled") === "true") return;
    cursors.pop();
    turned();
  });
  return {
    element: h("div", { class: "pager" }, previous, next),
    get after() { return cursors[cursors.length - 1]; },
    get number() { return cursors.length; },
    // Back to the first page (the filters changed).
    rewind() { cursors.length = 1; },
    // A page is being asked for: neither button until it is shown.
    loading() {
      following = null;
      enable(previous, false);
      enable(next, false);
    },
    // A page was shown; `nextAfter` is its next_after (null on the last page).
    shown(nextAfter) {
      following = nextAfter;
      enable(previous, cursors.length > 1);
      enable(next, Boolean(nextAfter));
    },
  };
}
