"""The task command handlers on the in-memory event log (infra.log.memory): ownership,
idempotency, refusals that write nothing, and a log that does not answer. No server:
what crosses NATS is tested in tests/integration and tests/security."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from domain.errors import CommandRefused
from domain.tasks.commands import CancelTask, SubmitTask
from infra.caller import current_identity
from infra.log.format.codec import create_mapper
from infra.log.memory import InMemoryEventLog
from infra.log.repository import Repository
from infra.names import Names
from projections.board.tasks import TaskBoard
from projections.runner import ProjectionRunner
from services.commands.tasks import TaskService


@dataclass
class World:
    log: InMemoryEventLog
    board: TaskBoard
    runner: ProjectionRunner
    tasks: TaskService
    published: list[tuple[str, bytes]]

    async def as_(self, identity: str, command: object) -> dict:
        """Run a command as `identity`, the way the command service sets its sender."""
        token = current_identity.set(identity)
        try:
            handler = getattr(self.tasks, type(command).__name__.removesuffix("Task").lower())
            reply: dict = await handler(command)
            return reply
        finally:
            current_identity.reset(token)

    async def applied(self) -> None:
        assert await self.runner.position.wait_for(await self.log.last_position(), 5)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    names = Names("unit")
    log = InMemoryEventLog(names, create_mapper())
    board = TaskBoard()
    runner = ProjectionRunner(log, [board])
    await runner.start()
    published: list[tuple[str, bytes]] = []

    async def publish(subject: str, data: bytes) -> None:
        published.append((subject, data))

    tasks = TaskService(Repository(log, "task"), names, board, publish, 1.0, 60.0,
                        is_operator=lambda identity: identity == "operator")
    yield World(log, board, runner, tasks, published)
    await runner.stop()


def submit(task_id: str = "t1", **body: object) -> SubmitTask:
    return SubmitTask.model_validate({"task_id": task_id, "kind": "echo", **body})


async def refused(world: World, identity: str, command: object, code: str) -> str:
    before = await world.log.last_position()
    with pytest.raises(CommandRefused) as raised:
        await world.as_(identity, command)
    assert str(raised.value.code) == code
    assert await world.log.last_position() == before  # a refusal writes nothing
    return raised.value.message


async def test_a_submit_is_recorded_as_its_submitter_and_shown_on_the_board(world):
    reply = await world.as_("ci", submit(payload={"n": 1}))
    assert reply["ok"] and reply["status"] == "pending"
    [recorded] = await world.log.history("task", "t1")
    assert (recorded.name, recorded.identity) == ("Submitted", "ci")
    await world.applied()
    assert world.board.get("t1").status == "pending"


async def test_the_same_submission_again_is_answered_not_repeated(world):
    first = await world.as_("ci", submit(payload={"n": 1}))
    again = await world.as_("ci", submit(payload={"n": 1}))
    assert first["ok"] and again["ok"] and again["status"] == first["status"]
    assert await world.log.last_position() == 1


async def test_another_submitter_cannot_take_or_probe_a_task_id(world):
    await world.as_("ci", submit(payload={"secret": 1}))
    same_body = await refused(world, "intruder", submit(payload={"secret": 1}), "conflict")
    other_body = await refused(world, "intruder", submit(payload={"guess": 2}), "conflict")
    assert same_body == other_body == "task id t1 is taken; choose another"
    await refused(world, "ci", submit(payload={"n": 2}), "conflict")  # its own, changed


async def test_only_the_submitter_or_an_operator_cancels(world):
    await world.as_("ci", submit("t1"))
    await world.as_("ci", submit("t2"))
    # Another's task is as if it did not exist: the reply tells nothing of it.
    theirs = await refused(world, "intruder", CancelTask(task_id="t1"), "not_found")
    assert theirs == "task t1 does not exist"
    assert (await world.as_("ci", CancelTask(task_id="t1")))["status"] == "cancelled"
    assert (await world.as_("operator", CancelTask(task_id="t2")))["status"] == "cancelled"
    assert await refused(world, "ci", CancelTask(task_id="t9"), "not_found") == (
        "task t9 does not exist")
    assert world.published == []  # no agent held them: no control message


async def test_a_log_that_does_not_answer_gets_a_coded_retry(world):
    world.log.unavailable = True
    with pytest.raises(CommandRefused) as raised:
        await world.as_("ci", submit())
    assert str(raised.value.code) == "unavailable"
    world.log.unavailable = False
    assert await world.log.last_position() == 0
    assert (await world.as_("ci", submit()))["ok"]  # the retry goes through
