"""The dashboard with ORCH_AUTH=on: its files load without a token, the page asks for
one before any request the API would refuse, takes it from a /ui/#token=... link (the
fragment never reaches the server), and says so plainly when a read token does not reach
the event tail or may not act; an admin token's action records its identity."""

from __future__ import annotations

import re

from playwright.async_api import expect

from infra.auth.credentials import read_secret
from tests.browser.conftest import dashboard
from tests.security.conftest import Secure, secure  # noqa: F401  (the fixture)
from tests.security.test_read_api_tokens import token as make_token


async def test_the_page_asks_for_a_token_and_a_read_token_does_not_reach_the_tail(
        browser, secure: Secure, tmp_path):  # noqa: F811
    read = read_secret(secure.orch.access_control.keys.read_token)
    assert (await secure.admin("task.submit", {"task_id": "t-1", "kind": "k"}))["ok"]
    refused: list[str] = []
    async for dash in dashboard(browser, secure.orch.http_port, tmp_path):
        dash.page.on("response", lambda r: refused.append(r.url) if r.status == 401 else None)
        await dash.open()
        await expect(dash.page.get_by_role("heading", name="Sign in")).to_be_visible()
        assert refused == []  # asked for a token first: no 401 logged (issue 34, item 4)
        await dash.page.get_by_label("Token").fill("ot1.nobody.aa.bb")
        await dash.page.get_by_role("button", name="Sign in").click()
        await expect(dash.page.get_by_text("The token was refused")).to_be_visible()
        await dash.page.get_by_label("Token").fill(read)
        await dash.page.get_by_role("button", name="Sign in").click()
        await expect(dash.page.get_by_role("heading", name="Overview")).to_be_visible()
        await expect(dash.page.get_by_role("status")).to_have_text("Live")
        await dash.page.get_by_role("link", name="Events").click()
        await expect(dash.page.get_by_text("The event tail needs an admin token")).to_be_visible()
        await expect(dash.page.get_by_role("table")).to_have_count(0)
        # A read token may not act, and is told why (issue 34, item 6).
        await dash.open("#/tasks/t-1")
        await dash.page.get_by_role("button", name="Cancel task").click()
        await expect(dash.page.get_by_text(re.compile(
            r"^Cancel task needs an admin token: this token may only read"))).to_be_visible()
        assert secure.orch.board.tasks["t-1"].status != "cancelled"
        await dash.page.get_by_role("button", name="Sign out").click()
        await expect(dash.page.get_by_role("heading", name="Sign in")).to_be_visible()
        assert not any(read in url for url in dash.requests)


async def test_a_token_link_signs_in_and_leaves_the_address_bar(
        browser, secure: Secure, tmp_path):  # noqa: F811
    admin = await make_token(secure, "admin", name="auditor")
    async for dash in dashboard(browser, secure.orch.http_port, tmp_path):
        await dash.open(f"#token={admin}")
        await expect(dash.page.get_by_role("heading", name="Overview")).to_be_visible()
        assert dash.page.url.endswith("/ui/#/"), dash.page.url
        await dash.page.get_by_role("link", name="Events").click()
        tail = dash.page.get_by_role("table", name=re.compile("last 50 events"))
        await expect(tail.get_by_role("row").nth(1)).to_be_visible()  # the admin's log
        await expect(dash.page.get_by_text("needs an admin token")).to_have_count(0)
        # An admin token acts, recorded as its identity.
        assert (await secure.admin("task.submit", {"task_id": "t-2", "kind": "k"}))["ok"]
        await dash.open("#/tasks/t-2")
        await dash.page.get_by_role("button", name="Cancel task").click()
        timeline = dash.page.get_by_role("table", name="Timeline of task t-2")
        await expect(timeline.get_by_role("row").filter(has_text="Cancelled")
                     ).to_contain_text("auditor")
        assert not any(admin in url for url in dash.requests)
