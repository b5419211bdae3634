"""Filters and paging with 10,000 agents, registered with raw concurrent requests; the
page's time to interactive is measured and printed."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time

import orjson
import pytest
from playwright.async_api import expect

from infra.settings import Settings
from tests.browser.conftest import Dash
from tests.support import eventually, subject

AGENTS = 10_000
LEFT = 30  # deregistered: the `left` filter finds exactly these
CONCURRENCY = 500
DASH = "\u2013"  # the page's ranges: agents 1-50 with an en dash


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # No heartbeats here: the detector is far away, so every agent stays healthy.
    return dataclasses.replace(settings, suspect_after=600.0, dead_after=1200.0)


def agent_id(i: int) -> str:
    return f"agent-{i:05d}"


async def _send_all(nc, names, command: str, bodies: list[dict]) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(body: dict) -> None:
        async with gate:
            msg = await nc.request(subject(names, command, body["agent_id"]),
                                   orjson.dumps(body), timeout=60)
            reply = orjson.loads(msg.data)
            assert reply["ok"], reply

    await asyncio.gather(*(one(b) for b in bodies))


async def test_filters_and_paging_with_ten_thousand_agents(dash: Dash, nc, names, orchestrator):
    started = time.monotonic()
    await _send_all(nc, names, "register", [
        {"agent_id": agent_id(i), "capabilities": ["gpu" if i % 2 else "cpu"], "capacity": 4,
         "labels": {"rack": f"r{i % 10}"}} for i in range(AGENTS)])
    await _send_all(nc, names, "deregister",
                    [{"agent_id": agent_id(i), "incarnation": 1}
                     for i in range(AGENTS - LEFT, AGENTS)])
    await eventually(lambda: orchestrator.agents.counts().get("left") == LEFT, timeout=60,
                     what="deregistrations applied")
    registered_s = time.monotonic() - started

    opened = time.monotonic()
    await dash.open("#/agents")
    table = dash.page.get_by_role("table", name="Agents, page 1")
    await expect(table.get_by_role("link", name=agent_id(0), exact=True)).to_be_visible()
    interactive_s = time.monotonic() - opened
    print(f"\n{AGENTS} agents registered in {registered_s:.1f}s; the agents page was "
          f"interactive {interactive_s * 1000:.0f} ms after navigation")
    await expect(dash.page.get_by_text(f"Page 1: agents 1{DASH}50 of {AGENTS}")).to_be_visible()
    await expect(table.get_by_role("row")).to_have_count(51)  # the header and 50 agents
    await dash.screenshot("dashboard-agents.png")

    next_page = dash.page.get_by_role("button", name="Next page")
    await next_page.click()
    await expect(dash.page.get_by_text(f"Page 2: agents 51{DASH}100 of {AGENTS}")).to_be_visible()
    await next_page.click()
    page3 = dash.page.get_by_role("table", name="Agents, page 3")
    await expect(page3.get_by_role("row").nth(1)).to_contain_text(agent_id(100))
    await expect(dash.page.get_by_text(f"Page 3: agents 101{DASH}150 of {AGENTS}")).to_be_visible()
    await dash.page.get_by_role("button", name="Previous page").click()
    await expect(dash.page.get_by_role("table", name="Agents, page 2").get_by_role("row").nth(1)
                 ).to_contain_text(agent_id(50))

    # Filters start from the first page again and combine.
    await dash.page.get_by_role("combobox", name="Status").select_option("left")
    left = dash.page.get_by_role("table", name="Agents, page 1")
    await expect(left.get_by_role("link", name=re.compile(r"^agent-"))).to_have_count(LEFT)
    summary = dash.page.get_by_text(f"Page 1: agents 1{DASH}{LEFT} of {LEFT} left")
    await expect(summary).to_be_visible()
    await expect(dash.page.get_by_role("button", name="Next page")).to_be_disabled()
    await dash.page.get_by_role("searchbox", name="Capability").fill("gpu")
    await dash.page.get_by_role("button", name="Apply filters").click()
    await expect(left.get_by_role("link", name=re.compile(r"^agent-"))).to_have_count(LEFT // 2)
    assert re.search(r"status=left", dash.page.url) and "capability=gpu" in dash.page.url

    # The overview counts them all.
    await dash.page.get_by_role("link", name="Overview").click()
    await expect(dash.page.get_by_role("heading", name=f"Agents: {AGENTS}")).to_be_visible()
    await dash.screenshot("dashboard-overview.png")
