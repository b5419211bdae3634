"""The dashboard as an operator uses it (issue 34): drain, undrain and cancel from the
pages; a stopped orchestrator shown at once, its last state marked stale; the overview's
cards readable at several widths."""

from __future__ import annotations

import asyncio
import contextlib
import re

from playwright.async_api import Route, expect

from sdk.agent import TaskContext
from services.app import Orchestrator
from tests.browser.conftest import dashboard
from tests.browser.test_dashboard import agent, fact, row
from tests.support import eventually, request, subject


async def test_drain_undrain_and_cancel_from_the_pages(dash, nats_server, names, nc,
                                                       orchestrator):
    async def hold(ctx: TaskContext) -> None:
        await asyncio.Event().wait()

    worker = agent(nats_server, names, "op-1", handlers={"hold": hold})
    await worker.start()
    try:
        await dash.open("#/agents/op-1")
        status = fact(dash, "Status")
        await expect(status).to_have_text("healthy")
        await dash.page.get_by_role("button", name="Drain").click()
        await expect(status).to_have_text("draining")
        await expect(dash.page.get_by_text(re.compile(r"^Agent op-1: draining \(event \d+\)\.$"))
                     ).to_be_visible()
        await dash.page.get_by_role("button", name="Undrain").click()
        await expect(status).to_have_text("healthy")
        history = dash.page.get_by_role("table", name="History of agent op-1")
        for event in ("DrainStarted", "Undrained"):
            # Auth is off: the actions are recorded as anonymous, like an unnamed sender.
            await expect(history.get_by_role("row").filter(has_text=event)
                         ).to_contain_text("anonymous")
        assert orchestrator.agents.get("op-1").status == "healthy"

        reply = await request(nc, subject(names, "task.submit"),
                              {"task_id": "idle-1", "kind": "hold"})
        assert reply["ok"], reply
        await dash.open("#/tasks/idle-1")
        await expect(fact(dash, "Status")).to_have_text("running")
        await dash.page.get_by_role("button", name="Cancel task").click()
        await expect(fact(dash, "Status")).to_have_text("cancelled")
        await expect(dash.page.get_by_role("button", name="Cancel task")).to_have_count(0)
        timeline = dash.page.get_by_role("table", name="Timeline of task idle-1")
        await expect(timeline.get_by_role("row").filter(has_text="Cancelled")
                     ).to_contain_text("anonymous")
    finally:
        await worker.stop()


async def test_a_stopped_orchestrator_is_shown_at_once_and_its_last_state_as_stale(
        browser, settings, nats_server, names, tmp_path):
    orch = Orchestrator(settings)
    await orch.start()
    stopped = False
    worker = agent(nats_server, names, "seen-1")
    held: list[Route] = []
    try:
        await eventually(lambda: orch.is_leader, what="leader lease acquired")
        await worker.start()
        async for dash in dashboard(browser, orch.http_port, tmp_path):
            await dash.open("#/agents")
            found = row(dash, "seen-1")
            await expect(found.get_by_role("cell").nth(1)).to_have_text("healthy")
            await expect(dash.page.get_by_role("status")).to_have_text("Live")
            # A going server lets a waiting blocking query finish in its own time: here
            # it never answers, and the page must not wait for it to say so.
            async def hold(route: Route) -> None:
                held.append(route)

            await dash.page.route(re.compile(r"/v1/tasks\?limit=1&index="), hold)
            await eventually(lambda: bool(held), what="a blocking query waiting")
            await orch.stop()
            stopped = True
            await expect(dash.page.get_by_role("status")).to_have_text("Disconnected, retrying…")
            await expect(found.get_by_role("cell").nth(1)).to_have_text(
                "unknown (last seen healthy)")
            await expect(found.get_by_role("cell").nth(5)).to_have_text(re.compile(r" s ago "))
            await expect(dash.page.get_by_text(re.compile(
                r"^Disconnected from the orchestrator at .*: what follows is the last state "
                r"seen"))).to_be_visible()
            for route in held:
                with contextlib.suppress(Exception):
                    await route.abort()
    finally:
        await worker.stop(deregister=False)
        if not stopped:
            await orch.stop()


# The cards' tables fit their cards, and no fact breaks inside a word.
CLIPPED = """() => [...document.querySelectorAll('.card .scroll')]
  .filter((el) => el.scrollWidth > el.clientWidth + 1)
  .map((el) => el.querySelector('caption').textContent)"""
BROKEN_WORDS = """() => {
  const broken = [];
  for (const dd of document.querySelectorAll('.card dl.facts dd')) {
    const text = dd.firstChild;
    if (!text || text.nodeType !== Node.TEXT_NODE) continue;
    for (const m of text.data.matchAll(/\\S+/g)) {
      const range = document.createRange();
      range.setStart(text, m.index);
      range.setEnd(text, m.index + m[0].length);
      const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
      if (lines.size > 1) broken.push(m[0]);
    }
  }
  return broken;
}"""


async def test_the_overview_cards_fit_at_every_width(browser, orchestrator, nats_server, names,
                                                     tmp_path):
    web = agent(nats_server, names, "web-9", services=[
        {"name": "storefront-api", "address": "10.0.0.9", "port": 443}])
    await web.start()
    try:
        async for dash in dashboard(browser, orchestrator.http_port, tmp_path):
            await dash.open("#/")
            services = dash.page.get_by_role("table", name="Services, healthy of total")
            await expect(services.get_by_role("link", name="storefront-api")).to_be_visible()
            for width in (1280, 1100, 900, 700, 390):
                await dash.page.set_viewport_size({"width": width, "height": 800})
                assert await dash.page.evaluate(CLIPPED) == [], width
                assert await dash.page.evaluate(BROKEN_WORDS) == [], width
    finally:
        await web.stop()
