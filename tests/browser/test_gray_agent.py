"""A gray failure on the dashboard, in Chromium: an agent that heartbeats but never
accepts its assignments is shown unresponsive, with when it is tried again, and its page
says why (the tasks it left unaccepted)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re

import pytest
from playwright.async_api import expect

from infra.settings import Settings
from tests.browser.test_dashboard import fact, row
from tests.integration.test_gray_failure import GrayAgent
from tests.support import request, subject


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Two assignments left unaccepted within a second or two; out for long enough that
    # the page shows it whatever the load.
    return dataclasses.replace(settings, accept_timeout=0.5, unresponsive_after=2,
                               unresponsive_hold=120.0)


async def test_an_agent_that_never_accepts_is_shown_unresponsive_with_its_reason(
        dash, nc, names) -> None:
    gray = GrayAgent(nc, names, "gray-1")
    beating = asyncio.create_task(gray.run())
    try:
        await dash.open("#/agents")
        status = row(dash, "gray-1").get_by_role("cell").nth(1)
        await expect(status).to_have_text("healthy")
        reply = await request(nc, subject(names, "task.submit"),
                              {"task_id": "g1", "kind": "echo", "max_attempts": 5})
        assert reply["ok"], reply
        await expect(status).to_have_text("unresponsive")
        await dash.page.get_by_role("link", name="gray-1", exact=True).click()
        await expect(fact(dash, "Status")).to_have_text("unresponsive")
        await expect(fact(dash, "Out of placement until")).to_have_text(re.compile(r"\d"))
        history = dash.page.get_by_role("table", name="History of agent gray-1")
        await expect(history.get_by_role("cell", name="MarkedUnresponsive",
                                         exact=True)).to_be_visible()
        await expect(history).to_contain_text(
            "unresponsive: left 2 assignment(s) unaccepted in a row (g1, g1)")
        # Drain is offered: an operator may take it out for good.
        await expect(dash.page.get_by_role("button", name=re.compile("^Drain"))).to_be_visible()
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
