"""The dashboard's screenshots in docs/img, made again from a real orchestrator.

`make screenshots` (or `.venv/bin/python scripts/screenshots.py [OUT_DIR]`): starts an
orchestrator with auth on (its own embedded nats-server, in a temporary directory),
enrolls a small fleet, plays a few incidents (a task moved off a crashed agent, an agent
that came back after being declared dead, a drained agent) and photographs the pages
in Debian's Chromium (/usr/bin/chromium, or ORCH_CHROMIUM) through Playwright, signed in
with an admin token; last, sets flow control limits on a key some tasks use and
photographs the limits page. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import orjson
from playwright.async_api import Page, async_playwright, expect

from infra.auth.credentials import read_secret
from infra.auth.keys import Role, new_seed
from infra.bus.embedded import free_port
from infra.settings import Settings
from sdk.agent import AgentClient, TaskContext
from services.app import Orchestrator

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("ORCH_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync",
        "--disable-extensions", "--mute-audio"]
VIEWPORT = {"width": 1280, "height": 800}
DEAD_AFTER = 2.0


async def until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"screenshots: {what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def hold(ctx: TaskContext) -> None:
    for step in range(1, 1000):
        await ctx.progress(min(0.95, step / 40))
        await asyncio.sleep(1.0)


async def report(ctx: TaskContext) -> dict[str, Any]:
    return {"rows": 42}


class Scene:
    """An orchestrator with auth on, and what it takes to act on it as its operator."""

    def __init__(self, data_dir: Path) -> None:
        self.settings = Settings(
            data_dir=data_dir, embedded_nats_port=free_port(), http_port=free_port(),
            subject_prefix="orch", heartbeat_interval=0.2, suspect_after=DEAD_AFTER / 2,
            dead_after=DEAD_AFTER, accept_timeout=5.0, lease_ttl=2.0, retry_backoff=0.5,
            auth="on", nats_sync="default")
        self.orch = Orchestrator(self.settings)
        self.agents: list[AgentClient] = []

    async def start(self) -> None:
        await self.orch.start()
        await until(lambda: self.orch.is_leader, "the leader lease")
        seed = read_secret(self.orch.access_control.keys.operator)
        self.op = await nats.connect(self.orch.nats_url, name="operator", nkeys_seed_str=seed,
                                     inbox_prefix=self.orch.names.inbox_prefix("operator"))

    async def admin(self, command: str, body: dict[str, Any]) -> dict[str, Any]:
        msg = await self.op.request(self.orch.names.client_command(command, "operator"),
                                    orjson.dumps(body), timeout=10)
        reply: dict[str, Any] = orjson.loads(msg.data)
        if not reply.get("ok"):
            raise RuntimeError(f"screenshots: {command} refused: {reply}")
        return reply

    async def agent(self, agent_id: str, capabilities: list[str],
                    handlers: dict[str, Callable[[TaskContext], Awaitable[Any]]],
                    **extra: Any) -> AgentClient:
        token = (await self.admin("admin.enroll", {"agent_id": agent_id}))["token"]
        client = AgentClient(agent_id, capabilities, nats_url=self.orch.nats_url,
                             prefix="orch", nkey_seed=new_seed(Role.USER),
                             enrollment_token=token, handlers=handlers, **extra)
        await client.start()
        self.agents.append(client)
        return client

    def status(self, agent_id: str) -> str | None:
        view = self.orch.agents.get(agent_id)
        return None if view is None else view.status

    async def play(self) -> str:
        """The incidents; the id of the task that moved off the crashed agent."""
        web = {"name": "web", "address": "10.0.0.7", "port": 8080, "tags": ["blue"]}
        await self.agent("gpu-1", ["gpu"], {"render": hold}, capacity=3,
                         labels={"zone": "eu-west"})
        doomed = await self.agent("gpu-2", ["gpu"], {"render": hold}, capacity=2,
                                  labels={"zone": "eu-west"})
        await self.agent("cpu-1", ["cpu"], {"report": report}, capacity=4,
                         labels={"zone": "us-east"}, services=[web])
        flappy = await self.agent("cpu-2", ["cpu"], {"report": report}, capacity=2,
                                  labels={"zone": "us-east"}, services=[web])
        for i in range(4):
            await self.admin("task.submit", {"task_id": f"render-{i}", "kind": "render",
                                             "requires": ["gpu"]})
        for i in range(6):
            await self.admin("task.submit", {"task_id": f"report-{i}", "kind": "report"})
        await until(lambda: len(doomed.running) > 0, "a render on gpu-2")
        moved = sorted(doomed.running)[0]
        await self.agent("gpu-3", ["gpu"], {"render": hold}, capacity=3,
                         labels={"zone": "eu-central"})
        await doomed.stop(deregister=False)  # a crash: its work moves
        flappy.heartbeats_paused = True  # silent past dead_after, then back: a false death
        await until(lambda: self.status("gpu-2") == "dead" and self.status("cpu-2") == "dead",
                    "the two deaths")
        flappy.heartbeats_paused = False
        await until(lambda: self.status("cpu-2") == "healthy", "cpu-2 back")
        await self.admin("admin.agent.drain", {"agent_id": "gpu-3"})
        await until(lambda: self.orch.board.tasks[moved].agent_id not in (None, "gpu-2"),
                    f"{moved} moved")
        return moved

    async def stop(self) -> None:
        for client in self.agents:
            await client.stop(deregister=False)
        await self.op.close()
        await self.orch.stop()


async def shoot(page: Page, out: Path, name: str) -> None:
    await page.wait_for_timeout(300)  # the last render settles (no assertion waits on it)
    await page.screenshot(path=str(out / name), full_page=False)
    print(f"screenshots: {out / name}")


async def photograph(scene: Scene, moved: str, out: Path) -> None:
    token = (await scene.admin("admin.token.create", {"name": "screenshots",
                                                      "scope": "admin"}))["token"]
    base = f"http://127.0.0.1:{scene.orch.http_port}/ui/"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        page = await context.new_page()
        await page.goto(f"{base}#token={token}")
        live = page.get_by_role("status")
        await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        await expect(live).to_have_text("Live")
        await shoot(page, out, "dashboard-overview.png")
        await page.get_by_role("link", name="Agents", exact=True).click()
        await expect(page.get_by_role("link", name="gpu-3")).to_be_visible()
        await shoot(page, out, "dashboard-agents.png")
        await page.goto(f"{base}#/tasks/{moved}")
        await expect(page.get_by_role("list", name="Causal chain", exact=False)).to_be_visible()
        await shoot(page, out, "dashboard-task.png")
        await page.goto(f"{base}#/agents/gpu-3")
        await expect(page.get_by_role("button", name="Undrain")).to_be_visible()
        await shoot(page, out, "dashboard-agent.png")
        await page.get_by_role("link", name="What if").click()
        await expect(page.get_by_role("table", name="What if, by dead_after")).to_be_visible()
        await shoot(page, out, "dashboard-what-if.png")
        await flow(scene)
        await page.get_by_role("link", name="Limits").click()
        await expect(page.locator('tr[data-limit="key:openai:org-1"]')).to_contain_text("2/2")
        await shoot(page, out, "dashboard-limits.png")
        await browser.close()


async def flow(scene: Scene) -> None:
    """Limits on a model API's key, with two of its tasks running and three waiting
    (after the other pages' photographs, which it leaves as they were)."""
    llm = await scene.agent("llm-1", ["llm"], {"summarize": hold}, capacity=4,
                            labels={"zone": "eu-west"})
    for body in ({"scope": "key", "name": "openai:org-1", "concurrency": 2, "rate": "600/min",
                  "burst": 20},
                 {"scope": "default", "name": "key", "concurrency": 8},
                 {"scope": "fairness", "name": "team-a", "weight": 3},
                 {"scope": "submitter", "name": "bulk-loader", "max_unfinished": 50000}):
        await scene.admin("admin.limits.set", body)
    for i in range(5):
        await scene.admin("task.submit", {"task_id": f"summarize-{i}", "kind": "summarize",
                                          "requires": ["llm"], "concurrency_key": "openai:org-1",
                                          "fairness_key": "team-a"})
    await until(lambda: len(llm.running) == 2, "two summaries running")


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="orch-screenshots-") as tmp:
        scene = Scene(Path(tmp) / "data")
        await scene.start()
        try:
            moved = await scene.play()
            await photograph(scene, moved, out)
        finally:
            await scene.stop()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "img"
    target.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(target))
