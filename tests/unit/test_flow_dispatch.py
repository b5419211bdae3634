"""Flow control on the in-memory event log: the same handlers, projections and
dispatcher as the product, with no server. Concurrency keys, rates, admission, fairness
and selectors, each decision read back from the log."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from domain.agents.commands import RegisterAgent
from domain.errors import CommandRefused, ErrorCode, Overloaded
from domain.limits.commands import SetLimit
from domain.tasks.commands import CompleteTask, SubmitTask
from domain.tasks.placement import Strategy
from infra.caller import current_identity
from infra.log.format.codec import create_mapper
from infra.log.memory import InMemoryEventLog
from infra.log.repository import Repository
from infra.names import Names
from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentHealth
from projections.limits import Limits
from projections.log_event import LogEvent
from projections.runner import ProjectionRunner
from services.commands.limits import LimitService
from services.commands.registry import AgentRegistry, silence_in
from services.commands.tasks import TaskService
from services.jobs import Jobs
from services.leader.dispatcher import Dispatcher
from services.leader.fleet import Fleet
from services.metrics import Metrics
from services.reactions import DISPATCH, TABLE
from tests.support import eventually

NAMES = Names("unit")


@dataclass
class Leader:
    log: InMemoryEventLog
    board: TaskBoard
    limits: Limits
    registry: AgentRegistry
    tasks: TaskService
    limit_service: LimitService
    delivered: list[dict[str, Any]]
    dispatcher: Dispatcher

    def status(self, task_id: str) -> str | None:
        view = self.board.get(task_id)
        return None if view is None else view.status

    def assigned(self) -> list[str]:
        return [m["task_id"] for m in self.delivered]

    async def submit(self, submitter: str, task_id: str, **fields: Any) -> dict[str, Any]:
        current_identity.set(submitter)
        return await self.tasks.submit(SubmitTask(task_id=task_id, kind="echo", **fields))

    async def complete(self, task_id: str) -> None:
        [message] = [m for m in self.delivered if m["task_id"] == task_id][-1:]
        view = self.board.get(task_id)
        assert view is not None and view.agent_id is not None
        current_identity.set(view.agent_id)
        await self.tasks.complete(CompleteTask(task_id=task_id, token=message["token"]))

    async def set_limit(self, **fields: Any) -> dict[str, Any]:
        current_identity.set("ops")
        reply = await self.limit_service.set(SetLimit(**fields))
        written = reply.get("position", 0)
        await eventually(lambda: self.limits.position >= written, what="the limit applied")
        return reply

    async def agent(self, agent_id: str, capacity: int, **labels: str) -> None:
        current_identity.set(agent_id)
        await self.registry.register(RegisterAgent(agent_id=agent_id, capacity=capacity,
                                                   labels=labels))


@pytest.fixture
async def leader() -> AsyncIterator[Leader]:
    log = InMemoryEventLog(NAMES, create_mapper())
    agents, board = AgentHealth(), TaskBoard()
    limits = Limits(max_unfinished_per_submitter=0, max_unfinished_total=0)
    board.follow(limits)
    delivered: list[dict[str, Any]] = []

    async def publish(subject: str, data: bytes) -> None:
        if subject.endswith(".tasks"):
            delivered.append(orjson.loads(data))

    registry = AgentRegistry(Repository(log, "agent"), NAMES, 1.0, silence_in(agents))
    tasks = TaskService(Repository(log, "task"), NAMES, board, publish, 1.0, 60.0,
                        limits=limits, kind_runs=agents.declares_kind)

    async def on_applied(event: LogEvent) -> None:
        if DISPATCH in TABLE.get(event.name, ()) or event.kind == "limit":
            dispatcher.poke()

    runner = ProjectionRunner(log, [limits, agents, board], on_applied=on_applied)
    fleet = Fleet(agents, board, runner.position)
    dispatcher = Dispatcher(board, fleet, tasks, Strategy.LEAST_LOADED, 30.0, Metrics(),
                            limits=limits)
    tasks.placer = dispatcher.claim
    await runner.start()
    jobs = Jobs()
    jobs.spawn("dispatcher", dispatcher.run)
    try:
        yield Leader(log, board, limits, registry, tasks,
                     LimitService(Repository(log, "limit")), delivered, dispatcher)
    finally:
        await jobs.cancel("dispatcher")
        await runner.stop()


def placed(leader: Leader, count: int) -> Callable[[], bool]:
    return lambda: len(leader.assigned()) == count


async def open_of_key_at_every_position(log: InMemoryEventLog, key: str) -> list[int]:
    """Replays the log into a fresh board: the key's open tasks after each event."""
    board, counts = TaskBoard(), []
    async for event in log.iterate(0):
        board.apply(event)
        counts.append(board.flow.open.get(key, 0))
    return counts


async def test_a_concurrency_key_never_has_more_than_its_limit_open(leader: Leader) -> None:
    await leader.set_limit(scope="key", name="gpu", concurrency=2)
    await leader.agent("a1", capacity=10)
    for i in range(6):
        await leader.submit("ci", f"t{i}", concurrency_key="gpu")
    await eventually(lambda: len(leader.assigned()) == 2, what="two placed")
    for done in range(4):  # each finish lets exactly one more in
        await leader.complete(leader.assigned()[done])
        await eventually(placed(leader, min(6, done + 3)), what="the next placed")
    assert max(await open_of_key_at_every_position(leader.log, "gpu")) == 2


async def test_a_task_held_by_its_key_does_not_hold_back_the_ones_behind(
        leader: Leader) -> None:
    await leader.set_limit(scope="key", name="slow", concurrency=0)
    await leader.agent("a1", capacity=4)
    await leader.submit("ci", "held", concurrency_key="slow", priority=5)
    await leader.submit("ci", "free")
    await eventually(lambda: leader.status("free") == "assigned", what="free placed")
    assert leader.status("held") == "pending"
    await leader.set_limit(scope="key", name="slow")  # lifted: nothing bounds it now
    await eventually(lambda: leader.status("held") == "assigned", what="held placed")


async def test_a_rate_places_a_burst_then_one_per_interval(leader: Leader) -> None:
    await leader.set_limit(scope="key", name="api", rate="20/s", burst=2)
    await leader.agent("a1", capacity=50)
    for i in range(6):
        await leader.submit("ci", f"r{i}", concurrency_key="api")
    await eventually(lambda: len(leader.assigned()) == 6, what="all placed in time")
    times = [e.recorded_at.timestamp() for e in await all_events(leader.log)
             if e.name == "Assigned"]
    # Within one token of the bucket: never more placements in a window than the burst
    # plus what the rate refills in it.
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            assert j - i + 1 <= 2 + (times[j] - start) * 20 + 1


async def all_events(log: InMemoryEventLog) -> list[Any]:
    return [event async for event in log.iterate(0)]


async def test_admission_refuses_past_the_bound_and_writes_nothing(leader: Leader) -> None:
    await leader.set_limit(scope="submitter", name="bulk", max_unfinished=2)
    for i in range(2):
        await leader.submit("bulk", f"b{i}")
    before = await leader.log.last_position()
    with pytest.raises(Overloaded) as refused:
        await leader.submit("bulk", "b2")
    assert refused.value.code == ErrorCode.OVERLOADED and refused.value.retry_after_s > 0
    assert refused.value.to_reply()["error"]["retry_after_s"] == refused.value.retry_after_s
    assert await leader.log.last_position() == before
    again = await leader.submit("bulk", "b1")  # a retry of one it has: still answered
    assert again["ok"] and "position" not in again
    assert (await leader.submit("other", "o1"))["ok"]  # another submitter is not bounded


async def test_the_total_bound_holds_for_everyone(leader: Leader) -> None:
    leader.limits.max_unfinished_total = 1
    await leader.submit("a", "x1")
    with pytest.raises(Overloaded, match=r"holds 1 unfinished tasks"):
        await leader.submit("b", "x2")


async def test_a_small_submitter_is_served_between_a_large_ones_backlog(
        leader: Leader) -> None:
    for i in range(40):
        await leader.submit("bulk", f"bulk{i:02}")
    await leader.submit("small", "small0")
    await leader.agent("a1", capacity=1)
    await eventually(lambda: len(leader.assigned()) == 1, what="the first placed")
    for n in range(1, 4):
        await leader.complete(leader.assigned()[-1])
        await eventually(placed(leader, n + 1), what="the next placed")
    assert "small0" in leader.assigned()[:3]


async def test_a_selector_places_only_on_matching_agents(leader: Leader) -> None:
    await leader.agent("us-1", capacity=4, zone="us")
    await leader.submit("ci", "eu-task", selector={"zone": "eu"})
    await leader.submit("ci", "anywhere", prefer={"zone": "eu"})
    await eventually(lambda: leader.status("anywhere") == "assigned", what="placed")
    assert leader.status("eu-task") == "pending"
    await leader.agent("eu-1", capacity=4, zone="eu")
    await eventually(lambda: leader.status("eu-task") == "assigned", what="eu placed")
    view = leader.board.get("eu-task")
    assert view is not None and view.agent_id == "eu-1"


@pytest.mark.parametrize(("fields", "problem"), [
    ({"scope": "key", "name": "k", "rate": "fast"}, "rate"),
    ({"scope": "key", "name": "k", "weight": 2.0}, "does not take"),
    ({"scope": "default", "name": "x", "concurrency": 1}, "name is 'key'"),
    ({"scope": "key", "name": "k", "burst": 3}, "burst"),
])
async def test_a_bad_limit_is_refused_and_writes_nothing(leader: Leader, fields: dict[str, Any],
                                                         problem: str) -> None:
    before = await leader.log.last_position()
    with pytest.raises(CommandRefused, match=problem) as refused:
        await leader.set_limit(**fields)
    assert refused.value.code == ErrorCode.INVALID_REQUEST
    assert await leader.log.last_position() == before


async def test_a_new_term_places_nothing_before_its_projections_caught_up(
        leader: Leader) -> None:
    """What the last leader wrote (a key's placements) counts before the first decision:
    the dispatcher offers no placement until its catch-up has finished."""
    await leader.agent("a1", capacity=4)
    gate, entered = asyncio.Event(), asyncio.Event()

    async def catch_up() -> None:
        entered.set()
        await gate.wait()

    own = leader.dispatcher
    term = Dispatcher(own.board, own.fleet, own.tasks, Strategy.LEAST_LOADED, 30.0,
                      Metrics(), limits=leader.limits, catch_up=catch_up)
    submit = SubmitTask(task_id="c1", kind="echo")
    assert term.claim("c1", submit) is None
    running = asyncio.create_task(term.run())
    try:
        await asyncio.wait_for(entered.wait(), 10)  # the term has begun: catching up
        assert not term.ready and term.claim("c1", submit) is None
        gate.set()
        await eventually(lambda: term.ready, what="caught up")
        claim = term.claim("c1", submit)
        assert claim is not None and claim.agent.agent_id == "a1"
        claim.release()
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert not term.ready  # a term that ended offers nothing


async def test_a_submit_behind_only_held_tasks_is_placed_at_once(leader: Leader) -> None:
    """Issue 34, item 14: the reply said `pending` while agents were idle whenever
    anything else waited. Behind tasks none of which can be placed, a new one is placed
    in its submit's own append."""
    await leader.set_limit(scope="key", name="held", concurrency=0)
    await leader.agent("a1", capacity=4)
    await leader.submit("ci", "h1", concurrency_key="held")
    await eventually(lambda: leader.dispatcher._stuck_at is not None,
                     what="a round that could place nothing")
    reply = await leader.submit("ci", "next")
    assert reply["status"] == "assigned"
    assert leader.status("h1") == "pending"


async def test_a_submit_of_a_kind_no_agent_runs_is_told_so(leader: Leader) -> None:
    current_identity.set("a1")
    await leader.registry.register(RegisterAgent(agent_id="a1", kinds=["echo"]))
    await eventually(lambda: leader.dispatcher.fleet.agents.get("a1") is not None,
                     what="a1 applied")
    current_identity.set("ci")
    unknown = await leader.tasks.submit(SubmitTask(task_id="u1", kind="translate"))
    assert unknown["status"] == "pending"
    assert unknown["warning"].startswith("no agent runs kind translate")
    known = await leader.tasks.submit(SubmitTask(task_id="k1", kind="echo"))
    assert "warning" not in known
    await leader.agent("any", capacity=1)  # declares no kinds: it runs any
    await eventually(lambda: leader.status("u1") == "assigned", what="u1 placed on it")
