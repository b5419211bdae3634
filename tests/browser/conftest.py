"""The dashboard in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium,
installed by `make test`) against a real orchestrator. A missing Chromium fails loudly.

Every page records the requests it makes and the errors it logs: a test ends with none
leaving 127.0.0.1 and no script error.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from infra.settings import Settings
from services.app import Orchestrator

CHROMIUM = os.environ.get("ORCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions", "--mute-audio"]
# Generous on a busy 2-core machine: expect() retries until this.
EXPECT_TIMEOUT_MS = 20_000
# The browser tests' detector: a suspect agent stays suspect for 3 s before it is
# declared dead, long enough for the page to show it whatever the load.
SUSPECT_AFTER = 1.0
DEAD_AFTER = 4.0
# The tests' own screenshots go to their tmp directory; docs/img is made by `make
# screenshots` (scripts/screenshots.py), one scene for every page it shows.

expect.set_options(timeout=EXPECT_TIMEOUT_MS)


def _chromium_found() -> bool:
    return Path(CHROMIUM).is_file() or shutil.which(CHROMIUM) is not None


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not _chromium_found():
        pytest.fail(f"no Chromium at {CHROMIUM}: the browser tests need it (make test installs "
                    f"it: apt-get install -y chromium; or set ORCH_CHROMIUM)", pytrace=False)
    async with async_playwright() as playwright:
        found = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                 headless=True)
        yield found
        await found.close()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, suspect_after=SUSPECT_AFTER, dead_after=DEAD_AFTER)


@dataclass
class Dash:
    """A browser tab on the dashboard of one orchestrator."""

    page: Page
    base: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    shots: Path = Path(".")

    async def open(self, fragment: str = "#/") -> None:
        await self.page.goto(f"{self.base}/ui/{fragment}")

    async def screenshot(self, name: str) -> Path:
        path = self.shots / name
        await self.page.screenshot(path=str(path), full_page=False)
        return path

    def check(self) -> None:
        away = [url for url in self.requests if urlsplit(url).hostname != "127.0.0.1"]
        assert not away, f"requests left 127.0.0.1: {away}"
        assert not self.errors, f"the page logged errors: {self.errors}"


@pytest.fixture
async def dash(browser: Browser, orchestrator: Orchestrator, tmp_path: Path) -> AsyncIterator[Dash]:
    async for found in dashboard(browser, orchestrator.http_port, tmp_path):
        yield found


async def dashboard(browser: Browser, http_port: int, tmp_path: Path,
                    width: int = 1280, height: int = 800) -> AsyncIterator[Dash]:
    """A fresh browser context (its own sessionStorage) on the orchestrator at this port."""
    context = await browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    page = await context.new_page()
    found = Dash(page, f"http://127.0.0.1:{http_port}", shots=tmp_path)
    page.on("request", lambda request: found.requests.append(request.url))
    page.on("pageerror", lambda error: found.errors.append(str(error)))
    # Chromium logs every 4xx and failed fetch as "Failed to load resource": those are
    # the API answering (401, 403, 404) or the tests cutting the connection.
    page.on("console", lambda message: found.errors.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load")
            else None)
    try:
        yield found
    finally:
        await context.close()
    found.check()
