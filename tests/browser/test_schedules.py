"""The dashboard's schedules page, in Chromium: a schedule made over NATS appears without a
reload, with its timing, its next run in UTC, and the task its last slot submitted."""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.support import request


async def test_schedules_are_listed_with_their_next_run_and_last_task(dash, nc, names):
    await dash.open("#/")
    sections = dash.page.get_by_role("navigation", name="Sections")
    await sections.get_by_role("link", name="Schedules").click()
    listed = dash.page.get_by_role("table", name="Schedules")
    await expect(listed.get_by_text("No schedules.")).to_be_visible()
    for name, timing in (("nightly", {"cron": "0 3 * * *"}), ("tick", {"every_s": 1})):
        reply = await request(nc, names.client_command("schedule.create", "alice"),
                              {"name": name, "task": {"kind": "report"}, "overlap": "allow",
                               **timing})
        assert reply["ok"], reply
    nightly = listed.get_by_role("row").filter(has_text="nightly")
    await expect(nightly).to_contain_text("cron 0 3 * * *")
    await expect(nightly).to_contain_text(re.compile(r"\d{4}-\d\d-\d\d 03:00:00Z \(in "))
    # The interval's slots fire: its last task is a link to the task's page.
    tick = listed.get_by_role("row").filter(has_text="every 1s")
    await expect(tick.get_by_role("link", name=re.compile(r"^tick-\d+$"))).to_be_visible()
    assert not dash.errors
