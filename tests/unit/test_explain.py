"""Every task history the log can hold is explained: steps with reasons, moves with causes.

Each history is scripted with the aggregates themselves, so the events carry exactly the
fields the orchestrator records; the explanation must fit the read API's TaskWhy model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
import pytest

from domain.agents.agent import Agent
from domain.tasks.task import Task
from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentHealth
from services.audit.chain import task_story
from services.audit.waiting import waiting
from services.http.models import TaskWhy
from tests.unit.log_events import T0, FakeLogEvent

NOW = 1_000.0  # the aggregates' clock in these scripts


@dataclass(frozen=True)
class Recorded(FakeLogEvent):
    causation_id: str | None = None


class Script:
    """A log of aggregates' events with causation ids, one millisecond apart."""

    def __init__(self) -> None:
        self.events: list[Recorded] = []
        self.agents: dict[str, Agent] = {}

    def record(self, kind: str, aggregate: Agent | Task, caused_by: str | None = None) -> str:
        """Record the aggregate's new events; the id of the last one."""
        for domain_event in aggregate.collect_events():
            position = len(self.events) + 1
            self.events.append(Recorded(
                position, kind, aggregate.id, type(domain_event).__name__, f"ev-{position}",
                T0 + timedelta(milliseconds=position), dict(vars(domain_event)), caused_by))
        return self.events[-1].event_id

    def agent(self, agent_id: str, capabilities: tuple[str, ...] = ("cpu",)) -> Agent:
        agent = Agent(agent_id, list(capabilities), 2, {}, [])
        self.record("agent", agent)
        self.agents[agent_id] = agent
        return agent

    def death(self, agent_id: str) -> str:
        """The agent goes silent: suspected, then declared dead; the death's event id."""
        agent = self.agents[agent_id]
        agent.suspect(agent.incarnation, 0.6, 0.5, 7)
        suspicion = self.record("agent", agent, caused_by="hb-7")
        agent.declare_dead(agent.incarnation, 1.1, 1.0, 7)
        return self.record("agent", agent, caused_by=suspicion)

    def story(self, task_id: str = "t1") -> dict[str, Any]:
        mine = [e for e in self.events if e.kind == "task" and e.aggregate_id == task_id]
        agents: dict[str, list[Recorded]] = {}
        for event in self.events:
            if event.kind == "agent":
                agents.setdefault(event.aggregate_id, []).append(event)
        found = task_story(mine, agents)
        TaskWhy.model_validate({**found, "waiting": None})  # the API's documented shape
        orjson.dumps(found)
        return found


def submitted(script: Script, max_attempts: int = 3, requires: tuple[str, ...] = ()) -> Task:
    task = Task("t1", "echo", {"n": 1}, list(requires), 0, max_attempts, 30.0, "fp")
    script.record("task", task, caused_by="req-submit")
    return task


def assigned(script: Script, task: Task, agent_id: str = "a1", token: str = "tok-1",
             incarnation: int = 1) -> None:
    considered = [{"agent_id": agent_id, "incarnation": incarnation, "load": 0,
                   "capacity": 2}]
    task.assign(agent_id, incarnation, token, "least_loaded", considered, NOW + 100)
    script.record("task", task, caused_by="dispatch-1")


def running(script: Script, task: Task, token: str = "tok-1") -> None:
    task.accept(token)
    script.record("task", task, caused_by="req-accept")


def reasons(found: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["type"], s["reason"]) for s in found["chain"]]


class TestMoves:
    def test_a_task_requeued_off_a_dead_agent_says_why_and_what_caused_it(self) -> None:
        script = Script()
        script.agent("a1")
        task = submitted(script)
        assigned(script, task)
        running(script, task)
        death = script.death("a1")
        task.requeue("agent declared dead")
        script.record("task", task, caused_by=death)

        found = script.story()

        requeued = found["chain"][-1]
        assert requeued["type"] == "Requeued" and "placement" not in requeued
        assert requeued["reason"] == (
            "returned to the queue: no other agent could take it (agent a1 dead)")
        assert requeued["cause"]["type"] == "DeclaredDead"
        assert requeued["cause"]["detector"]["dead_after_s"] == 1.0
        assert requeued["cause"]["suspected"]["type"] == "Suspected"
        assert found["status"] == "pending" and found["attempts"] == 1
        assert found["kind"] == "echo" and found["requires"] == []

    @pytest.mark.parametrize(("reason", "cause_type", "says"), [
        ("agent declared dead", "DeclaredDead", "agent a1 dead"),
        ("agent deregistered", "Deregistered", "agent a1 left"),
        ("agent restarted", "Reregistered", "agent a1 restarted"),
        ("accept_timeout", "timeout",
         "agent a1 did not accept it in time; failed attempt 1 of at most 3"),
    ])
    def test_a_reassigned_task_names_the_move_its_cause_and_the_placement(
            self, reason: str, cause_type: str, says: str) -> None:
        script = Script()
        a1 = script.agent("a1")
        script.agent("a2")
        task = submitted(script)
        assigned(script, task)
        if cause_type == "DeclaredDead":
            cause = script.death("a1")
        elif cause_type == "Deregistered":
            a1.deregister(1)
            cause = script.record("agent", a1)
        elif cause_type == "Reregistered":
            a1.reregister(["cpu"], 2, {}, [])
            cause = script.record("agent", a1)
        else:
            cause = "timeout-3"
        task.reassign("a2", 1, "tok-2", reason, "least_loaded",
                      [{"agent_id": "a2", "incarnation": 1, "load": 1, "capacity": 2}])
        script.record("task", task, caused_by=cause)

        moved = script.story()["chain"][-1]

        assert moved["reason"] == (
            f"moved from a1 to a2 (incarnation 1) for attempt 2: {says}")
        assert moved["cause"]["type"] == cause_type
        assert moved["placement"]["chosen"] == "a2"
        assert moved["placement"]["reason"] == (
            "least_loaded chose a2 (load 1/2) among 1 healthy agent(s) considered")

    def test_a_task_accepted_by_the_agents_next_incarnation(self) -> None:
        script = Script()
        a1 = script.agent("a1")
        task = submitted(script)
        assigned(script, task)
        running(script, task)
        a1.reregister(["cpu"], 2, {}, [])
        restart = script.record("agent", a1)
        task.requeue("agent restarted")
        script.record("task", task, caused_by=restart)
        assigned(script, task, token="tok-2", incarnation=2)
        running(script, task, token="tok-2")

        found = script.story()

        assert reasons(found)[-3:] == [
            ("Requeued", "returned to the queue: no other agent could take it "
                         "(agent a1 restarted)"),
            ("Assigned", "placed again: assigned to a1 (incarnation 2) for attempt 2"),
            ("Accepted", "accepted by a1 (incarnation 2) on attempt 2"),
        ]
        assert found["status"] == "running" and found["attempts"] == 2

    def test_a_late_result_of_the_moved_attempt_is_refused_and_named(self) -> None:
        script = Script()
        script.agent("a1")
        script.agent("a2")
        task = submitted(script)
        assigned(script, task)
        task.reassign("a2", 1, "tok-2", "accept_timeout", "least_loaded", [])
        script.record("task", task, caused_by="timeout-3")
        task.record_stale("tok-1", "complete", "task t1: the token is not the current one")
        script.record("task", task, caused_by="req-late")

        found = script.story()

        assert [s["type"] for s in found["stale_results_refused"]] == ["StaleResultRefused"]
        assert found["chain"][-1]["reason"] == (
            "refused a late complete from attempt 1 (a1): the task is on attempt 2 and "
            "assigned")
        # A move with no candidates recorded still explains its placement.
        assert found["chain"][-2]["placement"]["reason"] == "least_loaded chose a2"


class TestFailures:
    def test_a_retried_task_says_when_and_why_it_was_retried(self) -> None:
        script = Script()
        script.agent("a1")
        task = submitted(script)
        assigned(script, task)
        running(script, task)
        task.fail("tok-1", "boom", True, NOW, 0.2, 2.0)
        script.record("task", task, caused_by="req-fail")
        waiting_retry = script.story()
        assigned(script, task, token="tok-2")

        found = script.story()

        failed, again = reasons(found)[-2:]
        assert failed[1].startswith(
            "attempt 1 on a1 failed: boom; failure 1 of at most 3, retry in 0.2s at ")
        assert again == ("Assigned", "retry: assigned to a1 (incarnation 1) for attempt 2")
        assert waiting_retry["status"] == "retry_wait"
        assert waiting_retry["retry_at"] == pytest.approx(NOW + 0.2)
        assert found["retry_at"] is None

    def test_a_timed_out_attempt(self) -> None:
        script = Script()
        script.agent("a1")
        task = submitted(script)
        assigned(script, task)
        running(script, task)
        task.fail("tok-1", "timed out after 30.0s", True, NOW, 0.2, 2.0)
        script.record("task", task, caused_by="timeout-5")

        assert script.story()["chain"][-1]["reason"].startswith(
            "attempt 1 on a1 timed out after 30.0s; failure 1 of at most 3")

    @pytest.mark.parametrize(("retryable", "why"), [
        (False, "the failure is not retryable"),
        (True, "2 failure(s) reached max_attempts"),
    ])
    def test_a_dead_lettered_task(self, retryable: bool, why: str) -> None:
        script = Script()
        script.agent("a1")
        task = submitted(script, max_attempts=2 if retryable else 3)
        assigned(script, task)
        if retryable:
            task.fail("tok-1", "boom", True, NOW, 0.2, 2.0)
            script.record("task", task)
            assigned(script, task, token="tok-2")
        token = "tok-2" if retryable else "tok-1"
        task.fail(token, "bust", retryable, NOW, 0.2, 2.0)
        script.record("task", task)

        found = script.story()

        attempt = 2 if retryable else 1
        assert found["chain"][-1]["reason"] == (
            f"dead-lettered: attempt {attempt} on a1 failed: bust; {why}")
        assert found["status"] == "dead_lettered"


class TestCancelled:
    @pytest.mark.parametrize(("steps", "says"), [
        (0, "cancelled while waiting in the queue: not needed"),
        (1, "cancelled while assigned to a1, not yet accepted: not needed; "
            "the agent was told to stop"),
        (2, "cancelled while running on a1: not needed; the agent was told to stop"),
        (3, "cancelled while waiting to retry: not needed"),
    ])
    def test_a_cancelled_task_says_what_it_was_doing(self, steps: int, says: str) -> None:
        script = Script()
        script.agent("a1")
        task = submitted(script)
        if steps >= 1:
            assigned(script, task)
        if steps >= 2:
            running(script, task)
        if steps >= 3:
            task.fail("tok-1", "boom", True, NOW, 0.2, 2.0)
            script.record("task", task)
        task.cancel("not needed")
        script.record("task", task, caused_by="req-cancel")

        found = script.story()

        assert found["chain"][-1]["reason"] == says
        assert found["status"] == "cancelled"


def fleet_of(script: Script) -> tuple[AgentHealth, TaskBoard]:
    agents, board = AgentHealth(), TaskBoard()
    for event in script.events:
        agents.apply(event)
        board.apply(event)
    return agents, board


class TestWaiting:
    def test_a_pending_task_waits_for_a_capability_nobody_live_has(self) -> None:
        script = Script()
        script.agent("a1")
        submitted(script, requires=("tpu",))
        agents, board = fleet_of(script)

        found = waiting(script.story(), agents, board, NOW)

        assert found is not None
        assert found["reasons"] == [{"code": "no_capability", "count": 1,
                                     "message": "no live agent has capability tpu"}]
        assert found["summary"] == "waiting for an agent: no live agent has capability tpu"
        assert found["retry_at"] is None

    def test_a_task_in_retry_wait_says_when_the_retry_falls_due(self) -> None:
        script = Script()
        script.agent("a1")
        task = submitted(script)
        assigned(script, task)
        task.fail("tok-1", "boom", True, NOW, 0.2, 2.0)
        script.record("task", task)
        agents, board = fleet_of(script)
        story = script.story()

        before = waiting(story, agents, board, NOW + 0.05)
        after = waiting(story, agents, board, NOW + 1.0)

        assert before is not None and after is not None
        assert before["retry_in_s"] == 0.15 and before["summary"].startswith(
            "waiting to retry: due at ")
        assert after["retry_in_s"] == 0.0 and after["summary"].endswith(
            "an agent can take it: it is placed next")
        assert before["reasons"] == [{"code": "placeable", "count": 1,
                                      "message": "1 agent can take it now"}]

    def test_a_task_that_does_not_wait_has_no_waiting(self) -> None:
        script = Script()
        script.agent("a1")
        task = submitted(script)
        assigned(script, task)
        agents, board = fleet_of(script)

        assert waiting(script.story(), agents, board, NOW) is None
