"""The dashboard, live, in Chromium: agents appearing and dying without a reload, a moved
task's causal chain, the pause switch and the connection indicator."""

from __future__ import annotations

import asyncio
import re

from playwright.async_api import expect

from sdk.agent import AgentClient, TaskContext
from tests.browser.conftest import DEAD_AFTER, Dash
from tests.support import registration, request, subject

SLACK_S = 15.0  # on top of dead_after: a busy 2-core machine


def agent(nats_server, names, agent_id: str, **extra) -> AgentClient:
    return AgentClient(agent_id, extra.pop("capabilities", ["cpu"]), nats_url=nats_server.url,
                       prefix=names.prefix, **extra)


def fact(dash: Dash, term: str):
    return dash.page.locator("dl.facts dt", has_text=re.compile(f"^{re.escape(term)}$")).locator(
        "xpath=following-sibling::dd[1]")


def row(dash: Dash, name: str):
    return dash.page.get_by_role("row").filter(has=dash.page.get_by_role("link", name=name,
                                                                         exact=True))


async def test_an_agent_registered_after_the_page_loaded_appears_without_a_reload(
        dash, nats_server, names):
    await dash.open("#/agents")
    await expect(dash.page.get_by_role("heading", name="Agents", level=1)).to_be_visible()
    await expect(dash.page.get_by_role("status")).to_have_text("Live")
    await expect(dash.page.get_by_text("No agents match these filters.")).to_be_visible()
    late = agent(nats_server, names, "late-1", capacity=3, labels={"zone": "eu"})
    await late.start()
    try:
        found = row(dash, "late-1")
        await expect(found).to_be_visible()
        await expect(found.get_by_role("cell").nth(1)).to_have_text("healthy")
        await expect(found.get_by_role("cell").nth(3)).to_have_text("zone=eu")
        # Running of capacity and the load, as the CLI prints them (issue 34, item 1).
        load = found.get_by_role("cell").nth(4)
        await expect(load).to_have_text(re.compile(r"^[0-3]/3 \d{1,3}%$"))
        # The overview counts it too, and it links to the agents of that status.
        await dash.page.get_by_role("link", name="Overview").click()
        agents_table = dash.page.get_by_role("table", name="Agents by status")
        await expect(agents_table.get_by_role("row").filter(
            has=dash.page.get_by_role("link", name="healthy", exact=True))).to_contain_text("1")
        # The log's pace: a dash until two reads of it, then events per second.
        pace = dash.page.locator("dt", has_text="Events per second").locator(
            "xpath=following-sibling::dd[1]")
        await expect(pace).to_have_text(re.compile(r"^(—|\d+\.\d)$"))
    finally:
        await late.stop()


async def test_a_silent_agent_turns_suspect_then_dead_on_the_page(dash, nats_server, names):
    quiet = agent(nats_server, names, "quiet-1")
    await quiet.start()
    try:
        await dash.open("#/agents")
        status = row(dash, "quiet-1").get_by_role("cell").nth(1)
        await expect(status).to_have_text("healthy")
        await quiet.stop(deregister=False)  # heartbeats stop: a crash, not a goodbye
        silent_at = asyncio.get_running_loop().time()
        await expect(status).to_have_text("suspect")
        await expect(status).to_have_text("dead", timeout=(DEAD_AFTER + SLACK_S) * 1000)
        took = asyncio.get_running_loop().time() - silent_at
        assert took < DEAD_AFTER + SLACK_S
        print(f"\nquiet-1 shown dead {took:.2f}s after its last heartbeat "
              f"(dead_after {DEAD_AFTER}s)")
        # Its page tells the story, with the detector's readings.
        await dash.page.get_by_role("link", name="quiet-1", exact=True).click()
        history = dash.page.get_by_role("table", name="History of agent quiet-1")
        for event in ("Registered", "Suspected", "DeclaredDead"):
            await expect(history.get_by_role("cell", name=event, exact=True)).to_be_visible()
        await expect(history).to_contain_text("against dead_after 4.00 s")
    finally:
        await quiet.stop(deregister=False)


async def test_a_moved_tasks_page_shows_the_chain_from_the_missed_heartbeat_to_the_move(
        dash, nats_server, names, nc, orchestrator):
    started = asyncio.Event()

    async def hold(ctx: TaskContext) -> str:
        started.set()
        await asyncio.Event().wait()
        return "unreachable"

    doomed = agent(nats_server, names, "doomed", capabilities=["gpu"], handlers={"work": hold})
    rescuer = agent(nats_server, names, "rescuer", capabilities=["gpu"], handlers={"work": hold})
    await doomed.start()
    try:
        reply = await request(nc, subject(names, "task.submit"),
                              {"task_id": "job-1", "kind": "work", "requires": ["gpu"]})
        assert reply["ok"], reply
        await asyncio.wait_for(started.wait(), 20)
        await rescuer.start()
        await dash.open("#/tasks/job-1")
        await expect(dash.page.get_by_role("heading", name="Task job-1")).to_be_visible()
        await expect(dash.page.get_by_role("term").filter(has_text="Status")).to_be_visible()
        await expect(dash.page.get_by_text("running", exact=True)).to_be_visible()
        await doomed.stop(deregister=False)
        # The page follows the move live: no reload.
        chain = dash.page.get_by_role("list", name=re.compile(r"^Causal chain of event \d+$"))
        await expect(chain).to_be_visible(timeout=(DEAD_AFTER + SLACK_S) * 1000)
        steps = chain.get_by_role("listitem")
        await expect(steps).to_have_count(4)
        await expect(steps.nth(0)).to_contain_text("Heartbeats missed after #")
        await expect(steps.nth(1)).to_have_text(re.compile(r"^Suspected \(event \d+\)$"))
        await expect(steps.nth(2)).to_have_text(
            re.compile(r"^DeclaredDead \(event \d+\) of doomed$"))
        await expect(steps.nth(3)).to_have_text(
            re.compile(r"^Reassigned \(event \d+\) to rescuer$"))
        await expect(steps.nth(3).get_by_role("link", name="rescuer")).to_be_visible()
        timeline = dash.page.get_by_role("table", name="Timeline of task job-1")
        await expect(timeline).to_contain_text("placement: least_loaded chose rescuer")
        await dash.screenshot("dashboard-task.png")
        # The chain links to the events involved: the agent's page, that event marked.
        dead = steps.nth(2).get_by_role("link", name=re.compile(r"^DeclaredDead"))
        position = re.search(r"event (\d+)", await dead.inner_text()).group(1)  # type: ignore[union-attr]
        await dead.click()
        await expect(dash.page.get_by_role("heading", name="Agent doomed")).to_be_visible()
        marked = dash.page.locator("tr[aria-current='true']")
        await expect(marked.get_by_role("cell").first).to_have_text(position)
        await expect(marked).to_contain_text("DeclaredDead")
        moved = dash.page.get_by_role("table", name="Tasks moved off agent doomed")
        await expect(moved.get_by_role("link", name="job-1")).to_be_visible()
        # What moved off no longer runs there (issue 34, item 2): not its last heartbeat's.
        await expect(fact(dash, "Running")).to_have_text("nothing")
        await expect(fact(dash, "Running / capacity, load")).to_have_text("0/1 0%")
        assert orchestrator.board.tasks["job-1"].agent_id == "rescuer"
    finally:
        await rescuer.stop(deregister=False)
        await doomed.stop(deregister=False)


async def test_the_pause_switch_holds_updates_and_resuming_catches_up(dash, nats_server, names):
    await dash.open("#/agents")
    await expect(dash.page.get_by_role("status")).to_have_text("Live")
    pause = dash.page.get_by_role("button", name="Pause updates")
    await pause.click()
    await expect(pause).to_have_attribute("aria-pressed", "true")
    await expect(dash.page.get_by_role("status")).to_have_text("Paused")
    held = agent(nats_server, names, "held-1")
    await held.start()
    try:
        await asyncio.sleep(2.0)  # what an unpaused page needs well under a second for
        await expect(dash.page.get_by_role("link", name="held-1")).to_have_count(0)
        await pause.click()
        await expect(pause).to_have_attribute("aria-pressed", "false")
        await expect(dash.page.get_by_role("link", name="held-1", exact=True)).to_be_visible()
        await expect(dash.page.get_by_role("status")).to_have_text("Live")
    finally:
        await held.stop()


async def test_a_lost_connection_shows_disconnected_and_recovers_on_its_own(
        dash, nats_server, names):
    await dash.open("#/agents")
    await expect(dash.page.get_by_role("status")).to_have_text("Live")
    # The API unreachable: every request to it fails at the network level.
    await dash.page.route("**/v1/**", lambda route: route.abort("connectionrefused"))
    first = agent(nats_server, names, "while-down")
    await first.start()  # moves the log: the page's blocking query returns, the next fails
    try:
        await expect(dash.page.get_by_role("status")).to_have_text("Disconnected, retrying…")
        await dash.page.unroute("**/v1/**")
        await expect(dash.page.get_by_role("status")).to_have_text("Live")
        await expect(dash.page.get_by_role("link", name="while-down", exact=True)).to_be_visible()
    finally:
        await first.stop()


async def test_tasks_filters_and_the_event_tail(dash, nc, names):
    for i in range(3):
        reply = await request(nc, subject(names, "task.submit"),
                              {"task_id": f"echo-{i}", "kind": "echo" if i else "other"})
        assert reply["ok"], reply
    await dash.open("#/tasks")
    table = dash.page.get_by_role("table", name="Tasks, page 1")
    await expect(table.get_by_role("link", name=re.compile(r"^echo-"))).to_have_count(3)
    await dash.page.get_by_role("searchbox", name="Kind").fill("echo")
    await dash.page.get_by_role("button", name="Apply filters").click()
    await expect(table.get_by_role("link", name=re.compile(r"^echo-"))).to_have_count(2)
    await dash.page.get_by_role("combobox", name="Status").select_option("completed")
    await expect(dash.page.get_by_text("No tasks match these filters.")).to_be_visible()
    # Paging: 55 more tasks make two pages of 50, newest first, followed live.
    await asyncio.gather(*(request(nc, subject(names, "task.submit"),
                                   {"task_id": f"bulk-{i:02d}", "kind": "bulk"})
                           for i in range(55)))
    await dash.page.get_by_role("combobox", name="Status").select_option("")
    await dash.page.get_by_role("searchbox", name="Kind").fill("")
    await dash.page.get_by_role("button", name="Apply filters").click()
    await expect(dash.page.get_by_text("Page 1: tasks 1\u201350")).to_be_visible()
    first = dash.page.get_by_role("table", name="Tasks, page 1")
    # The newest first (issue 34, item 4): the last submitted heads the list.
    await expect(first.get_by_role("row").nth(1).get_by_role("link")
                 ).to_have_text(re.compile(r"^bulk-"))
    await expect(first.get_by_role("link", name="echo-0")).to_have_count(0)
    await dash.page.get_by_role("button", name="Next page").click()
    page2 = dash.page.get_by_role("table", name="Tasks, page 2")
    await expect(page2.get_by_role("link", name=re.compile(r"^(bulk|echo)-"))).to_have_count(8)
    await expect(page2.get_by_role("row").last.get_by_role("link")).to_have_text("echo-0")
    await expect(dash.page.get_by_text("Page 2: tasks 51\u201358")).to_be_visible()
    await dash.page.get_by_role("button", name="Previous page").click()
    await expect(dash.page.get_by_role("table", name="Tasks, page 1")
                 .get_by_role("link", name="echo-0")).to_have_count(0)
    await expect(dash.page.get_by_role("table", name="Tasks, page 1")
                 .get_by_role("link", name=re.compile(r"^bulk-"))).to_have_count(50)
    # Auth is off here: the event tail is open, newest first.
    await dash.page.get_by_role("link", name="Events").click()
    tail = dash.page.get_by_role("table", name=re.compile("last 50 events"))
    await expect(tail.get_by_role("row").nth(1)).to_contain_text("bulk-")
    await expect(tail.get_by_role("row")).to_have_count(51)  # the header and 50 events
    await expect(tail.get_by_role("link", name="echo-2")).to_have_count(0)  # older


async def test_readable_at_phone_width(browser, orchestrator, nats_server, names, tmp_path):
    from tests.browser.conftest import dashboard
    async for phone in dashboard(browser, orchestrator.http_port, tmp_path, width=390, height=844):
        small = agent(nats_server, names, "pocket-1")
        await small.start()
        try:
            await phone.open("#/agents")
            await expect(phone.page.get_by_role("link", name="pocket-1")).to_be_visible()
            # Nothing wider than the screen but the table's own scrolling box.
            width = await phone.page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, width
            await phone.page.get_by_role("link", name="Overview").click()
            await expect(phone.page.get_by_role("table", name="Agents by status")).to_be_visible()
        finally:
            await small.stop()


async def test_services_and_their_instances(dash, nats_server, names):
    web = agent(nats_server, names, "web-1", services=[
        {"name": "web", "address": "10.0.0.1", "port": 8000, "tags": ["blue"]}])
    await web.start()
    try:
        await dash.open("#/")
        overview = dash.page.get_by_role("table", name="Services, healthy of total")
        await expect(overview.get_by_role("row").filter(
            has=dash.page.get_by_role("link", name="web", exact=True))).to_contain_text("1")
        sections = dash.page.get_by_role("navigation", name="Sections")
        await sections.get_by_role("link", name="Services").click()
        listed = dash.page.get_by_role("table", name="Services")
        await expect(listed.get_by_role("cell", name="blue")).to_be_visible()
        await listed.get_by_role("link", name="web", exact=True).click()
        await expect(dash.page.get_by_role("heading", name="Service web")).to_be_visible()
        instances = dash.page.get_by_role("table", name="Instances of web")
        await expect(instances.get_by_role("cell", name="10.0.0.1:8000")).to_be_visible()
        await expect(dash.page.get_by_text("1 of 1 instances healthy")).to_be_visible()
        # Keyboard: the agent link is reachable and followed with Enter.
        await instances.get_by_role("link", name="web-1").focus()
        await dash.page.keyboard.press("Enter")
        await expect(dash.page.get_by_role("heading", name="Agent web-1")).to_be_visible()
        await expect(dash.page.get_by_role("heading", name="Agent web-1")).to_be_focused()
    finally:
        await web.stop()


async def test_a_service_offered_by_many_agents_is_shown_a_page_at_a_time(dash, nc, names):
    # 55 agents offer "edge": pages of 50 agents by id, Next and Previous between them.
    for i in range(55):
        reply = await request(nc, subject(names, "register", f"edge-{i:02d}"), registration(
            f"edge-{i:02d}", services=[{"name": "edge", "address": f"10.1.0.{i}", "port": 80}]))
        assert reply["ok"], reply
    await dash.open("#/services/edge")
    first = dash.page.get_by_role("table", name="Instances of edge")
    await expect(first.get_by_role("link", name=re.compile(r"^edge-"))).to_have_count(50)
    await expect(dash.page.get_by_text(re.compile(r"of 50 instances healthy on page 1"))
                 ).to_be_visible()
    await expect(dash.page.get_by_role("button", name="Previous page")
                 ).to_have_attribute("aria-disabled", "true")
    await dash.page.get_by_role("button", name="Next page").click()
    second = dash.page.get_by_role("table", name="Instances of edge, page 2")
    await expect(second.get_by_role("link", name=re.compile(r"^edge-"))).to_have_count(5)
    await expect(second.get_by_role("link", name="edge-54")).to_be_visible()
    await expect(dash.page.get_by_role("button", name="Next page")
                 ).to_have_attribute("aria-disabled", "true")
    await dash.page.get_by_role("button", name="Previous page").click()
    await expect(dash.page.get_by_role("table", name="Instances of edge")
                 .get_by_role("link", name="edge-00")).to_be_visible()
