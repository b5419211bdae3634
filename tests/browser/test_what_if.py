"""The what-if view in Chromium: a false death recorded in the log, replayed under the
dead_after values around the one in force and under values typed in; a read token gets a
plain message instead."""

from __future__ import annotations

import re

from playwright.async_api import Route, expect

from infra.auth.credentials import read_secret
from sdk.agent import AgentClient
from tests.browser.conftest import DEAD_AFTER, Dash, dashboard
from tests.security.conftest import Secure, secure  # noqa: F401  (the fixture)
from tests.support import eventually

TITLE = "False deaths avoided and added against dead_after"


def point_row(dash: Dash, dead_after: str):
    table = dash.page.get_by_role("table", name="What if, by dead_after")
    return table.get_by_role("row").filter(
        has=dash.page.get_by_role("cell", name=dead_after, exact=True))


async def test_the_chart_and_its_table_show_the_replayed_points(
        dash, nats_server, names, orchestrator):
    flappy = AgentClient("flappy", ["cpu"], nats_url=nats_server.url, prefix=names.prefix)
    await flappy.start()
    try:
        await eventually(lambda: flappy.heartbeats_sent > 2)
        flappy.heartbeats_paused = True  # silent past dead_after: declared dead
        await eventually(lambda: orchestrator.agents.agents["flappy"].status == "dead",
                         timeout=DEAD_AFTER + 20)
        flappy.heartbeats_paused = False  # and back: a false death
        await eventually(lambda: flappy.incarnation == 2, timeout=20,
                         what="flappy re-registered")
        await dash.open("#/")
        await dash.page.get_by_role("link", name="What if").click()
        await expect(dash.page.get_by_role("heading", name="What if", level=1)).to_be_visible()
        # Multiples 0.25 to 3 of the dead_after in force (4 s): seven points.
        chart = dash.page.get_by_role("img", name=re.compile(f"^{TITLE}"))
        await expect(chart).to_be_visible()
        await expect(chart.locator("[data-series='avoided'] circle")).to_have_count(7)
        await expect(chart.locator("[data-series='added'] circle")).to_have_count(7)
        table = dash.page.get_by_role("table", name="What if, by dead_after")
        await expect(table.get_by_role("row")).to_have_count(8)  # the header and 7 points
        in_force = point_row(dash, "4")
        await expect(in_force).to_have_attribute("aria-current", "true")
        cells = in_force.get_by_role("cell")
        await expect(cells).to_have_text(["4", "1", "1", "0", "0", "0", "0"])
        await expect(dash.page.get_by_text("In force: dead_after 4 s")).to_be_visible()
        # The field says the values of the chart below it (issue 34, item 5).
        field = dash.page.get_by_label("dead_after values (seconds, comma-separated)")
        await expect(field).to_have_value("1, 2, 3, 4, 6, 8, 12")
        await field.fill("0")
        await dash.page.get_by_role("button", name="Replay").click()
        await expect(dash.page.get_by_text("Give at most 10 values")).to_be_visible()
        await field.fill("4, 3600")
        # While the replay runs, the earlier chart is not shown under the values typed.
        held: list[Route] = []

        async def hold(route: Route) -> None:
            held.append(route)

        await dash.page.route(re.compile(r"/v1/what-if\?dead_after="), hold)
        await dash.page.get_by_role("button", name="Replay").click()
        await expect(dash.page.get_by_text("Replaying under dead_after 4, 3600 s…")
                     ).to_be_visible()
        await expect(table).to_have_count(0)
        await eventually(lambda: bool(held), what="the replay asked for")
        for route in held:
            await route.continue_()
        await dash.page.unroute(re.compile(r"/v1/what-if\?dead_after="))
        await expect(table.get_by_role("row")).to_have_count(3)
        await expect(field).to_have_value("4, 3600")
        await expect(point_row(dash, "3600").get_by_role("cell")).to_have_text(
            ["3600", "1", "1", "1", "0", "0", "0"])
        await expect(chart.locator("[data-series='avoided'] circle")).to_have_count(2)
        await expect(chart.locator("[data-series='avoided'] circle").nth(1).locator("title")
                     ).to_have_text("False deaths avoided at dead_after 3600 s: 1")
    finally:
        await flappy.stop(deregister=False)


async def test_a_read_token_gets_a_plain_message(browser, secure: Secure, tmp_path):  # noqa: F811
    read = read_secret(secure.orch.access_control.keys.read_token)
    async for dash in dashboard(browser, secure.orch.http_port, tmp_path):
        await dash.open(f"#token={read}")
        await expect(dash.page.get_by_role("heading", name="Overview")).to_be_visible()
        await dash.page.get_by_role("link", name="What if").click()
        await expect(dash.page.get_by_text("The what-if chart needs an admin token")
                     ).to_be_visible()
        await expect(dash.page.get_by_role("img", name=re.compile(TITLE))).to_have_count(0)
        await expect(dash.page.get_by_role("table")).to_have_count(0)
