"""The dashboard's limits page and a held task's page, in Chromium (flow control, issue 32
item 6): limits set over NATS appear with what each key uses now (running of its limit,
waiting) and the admission bounds; a task a key's limit holds says so, with its key,
the limit's message and, for a rate, when its next token comes; all live, no reload."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from playwright.async_api import Locator, expect

from sdk.agent import AgentClient, TaskContext
from tests.browser.conftest import Dash
from tests.support import request, subject


def fact(dash: Dash, term: str) -> Locator:
    return dash.page.locator("dl.facts dt", has_text=re.compile(f"^{re.escape(term)}$")).locator(
        "xpath=following-sibling::dd[1]")


def cells(dash: Dash, limit: str) -> Locator:
    """The cells of a limit's row: scope, name, concurrency, rate, burst, weight, max
    unfinished, running, waiting."""
    return dash.page.get_by_role("table", name="Limits").locator(
        f'tr[data-limit="{limit}"]').get_by_role("cell")


async def set_limit(nc: Any, names: Any, **body: Any) -> None:
    reply = await request(nc, subject(names, "admin.limits.set"), body)
    assert reply["ok"], reply


async def submit(nc: Any, names: Any, task_id: str, **extra: Any) -> None:
    reply = await request(nc, subject(names, "task.submit"),
                          {"task_id": task_id, "kind": "work", **extra})
    assert reply["ok"], reply


async def test_limits_page_shows_keys_in_use_and_the_task_page_the_limit_holding_it(
        dash, nc, names, nats_server):
    running: dict[str, asyncio.Event] = {}

    async def work(ctx: TaskContext) -> str:
        done = running[ctx.task_id] = asyncio.Event()
        await done.wait()
        return ctx.task_id

    worker = AgentClient("w1", ["cpu"], capacity=8, nats_url=nats_server.url,
                         prefix=names.prefix, handlers={"work": work}, labels={"zone": "eu"})
    await worker.start()
    try:
        await dash.open("#/")
        sections = dash.page.get_by_role("navigation", name="Sections")
        await sections.get_by_role("link", name="Limits").click()
        await expect(dash.page.get_by_role("heading", name="Limits", level=1)).to_be_visible()
        await expect(dash.page.get_by_text("No limits set")).to_be_visible()
        await expect(dash.page.get_by_text(
            "orchestrator limits set KEY --concurrency N --rate 600/min")).to_be_visible()

        # Set over NATS, shown live: a key bounded to one at a time, a key at 1/min.
        await set_limit(nc, names, scope="key", name="gpu", concurrency=1)
        await set_limit(nc, names, scope="key", name="api", rate="1/min", burst=1)
        await set_limit(nc, names, scope="fairness", name="team-a", weight=3)
        await set_limit(nc, names, scope="submitter", name="bulk", max_unfinished=50000)
        for task_id in ("g0", "g1", "g2"):
            await submit(nc, names, task_id, concurrency_key="gpu", fairness_key="team-a",
                         selector={"zone": "eu"})
        for task_id in ("a0", "a1"):
            await submit(nc, names, task_id, concurrency_key="api")

        gpu = cells(dash, "key:gpu")
        await expect(gpu.nth(2)).to_have_text("1")
        await expect(gpu.nth(7)).to_have_text("1/1")  # running of its limit
        await expect(gpu.nth(8)).to_have_text("2")  # waiting
        api = cells(dash, "key:api")
        await expect(api.nth(3)).to_have_text("1/min")
        await expect(api.nth(4)).to_have_text("1")
        await expect(api.nth(7)).to_have_text("1 (no bound)")
        await expect(api.nth(8)).to_have_text("1")
        await expect(cells(dash, "fairness:team-a").nth(5)).to_have_text("3")
        await expect(cells(dash, "submitter:bulk").nth(6)).to_have_text("50,000")
        await expect(fact(dash, "Unfinished tasks")).to_have_text(
            re.compile(r"^5 in all, at most [\d,]+$"))
        await expect(fact(dash, "Per submitter")).to_contain_text("1 submitter has its own")

        # A task the concurrency limit holds: its flow fields, and the limit that holds it.
        await dash.open("#/tasks/g1")
        await expect(fact(dash, "Concurrency key")).to_have_text("gpu (limits)")
        await expect(fact(dash, "Fairness key")).to_have_text("team-a")
        await expect(fact(dash, "Selector")).to_have_text("zone=eu")
        waits = dash.page.get_by_role("region", name="Why it waits")
        await expect(waits.get_by_role("paragraph")).to_have_text(
            "waiting for its key's limit: key gpu has 1 of its 1 tasks assigned or running")
        await expect(fact(dash, "Held by")).to_have_text("Concurrency limit of key gpu (limits)")
        await expect(fact(dash, "Turns")).to_contain_text("as team-a")
        await expect(waits.get_by_role("listitem")).to_have_text(["1 agent can take it now"])

        # A task the rate holds: when its next token comes (a minute after a0's).
        await dash.open("#/tasks/a1")
        await expect(fact(dash, "Held by")).to_have_text("Rate limit of key api (limits)")
        await expect(waits.get_by_role("paragraph")).to_contain_text(
            "key api is at its rate of 1/min; its next token comes in")
        await expect(fact(dash, "Next token")).to_have_text(re.compile(r"^in \d+\.\d s \("))

        # g0 finishes: g1 takes its place, live, and no longer waits.
        await dash.open("#/tasks/g1")
        await expect(fact(dash, "Held by")).to_be_visible()
        running["g0"].set()
        await expect(fact(dash, "Status")).to_have_text("running")
        await expect(dash.page.get_by_role("region", name="Why it waits")).to_have_count(0)
    finally:
        for done in running.values():
            done.set()
        await worker.stop()
