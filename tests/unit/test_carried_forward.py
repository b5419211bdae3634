"""An aggregate's state carried forward: through the log's encoding and back it makes the
same aggregate, alone (its older events cut) or at the end of its whole history, and the
identity projection takes it as the identity it restates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from domain.agents.agent import Agent
from domain.base import StrIdAggregate, anchored_on, events_since_anchor
from domain.identities.identity import Identity
from domain.tasks.task import Task
from infra.log.format.codec import create_mapper
from projections.access import Access


def an_agent() -> Agent:
    agent = Agent(agent_id="w0", capabilities=["cpu", "gpu"], capacity=3,
                  labels={"zone": "a"}, kinds=["build"],
                  services=[{"name": "web", "address": "10.0.0.1", "port": 80}])
    agent.drain()
    return agent


def a_task() -> Task:
    task = Task(task_id="t0", kind="k", payload={"n": [1, 2]}, requires=["gpu"], priority=2,
                max_attempts=3, timeout_s=30.0, fingerprint="f" * 64)
    task.assign("w0", 1, "tok-1", "least_loaded", [], now=0.0)
    task.reassign("w1", 2, "tok-2", "agent_dead", "least_loaded", [])
    return task


def an_identity() -> Identity:
    identity = Identity(name="w0", roles=["agent"], public_key=None, created_by="op")
    identity.issue_enrollment("digest-1", 1e12, ["agent"], rotate=False, issued_by="op")
    identity.enroll("UKEY", "digest-1", now=0.0, client={})
    identity.issue_api_token("tk1", "read", "digest-2", issued_by="op")
    return identity


def state(aggregate: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(aggregate).items()
            if k not in ("_pending_events", "_carried_on")}


def through_the_log(events: Sequence[Any]) -> list[Any]:
    mapper = create_mapper()
    return [mapper.to_domain_event(mapper.to_stored_event(e)) for e in events]


@pytest.mark.parametrize("make", [an_agent, a_task, an_identity])
def test_the_carried_state_makes_the_same_aggregate(make: Any) -> None:
    aggregate: StrIdAggregate = make()
    history = aggregate.collect_events()
    aggregate.carry_forward()
    carried = through_the_log(aggregate.collect_events())
    assert [type(e).__name__ for e in carried] == ["CarriedForward"]

    alone = carried[0].mutate(None)  # everything before it was cut
    assert type(alone) is type(aggregate)
    assert state(alone) == state(aggregate)
    assert alone.version == aggregate.version == len(history) + 1
    assert anchored_on(alone) == carried[0].timestamp

    replayed: Any = None
    for event in through_the_log(history) + carried:  # the whole history
        replayed = event.mutate(replayed)
    assert state(replayed) == state(aggregate)
    assert anchored_on(replayed) == carried[0].timestamp


def test_an_aggregate_never_carried_is_anchored_at_its_creation() -> None:
    agent = an_agent()
    assert anchored_on(agent) == agent.created_on


def test_a_load_begins_at_the_latest_anchor_and_the_state_does_not_carry_it() -> None:
    agent = an_agent()
    assert events_since_anchor(agent) == 1  # created, then drained
    history = agent.collect_events()
    agent.carry_forward()
    carried = through_the_log(agent.collect_events())
    assert events_since_anchor(agent) == 0
    assert "_carried_version" not in carried[0].state  # set where it is applied

    assert events_since_anchor(carried[0].mutate(None)) == 0
    replayed: Any = None
    for event in through_the_log(history) + carried:
        replayed = event.mutate(replayed)
    assert events_since_anchor(replayed) == 0
    replayed.deregister(1)
    assert events_since_anchor(replayed) == 1


def test_the_identity_projection_takes_a_carried_identity_whole() -> None:
    identity = an_identity()
    identity.carry_forward()
    event = through_the_log(identity.collect_events())[-1]

    class Recorded:
        position, kind, aggregate_id, name = 9, "identity", "w0", "CarriedForward"
        event_id, recorded_at = "e9", event.timestamp

        def data(self) -> dict[str, Any]:
            return {"state": event.state}

    access = Access()
    access.apply(Recorded())
    view = access.identities["w0"]
    assert view.roles == frozenset({"agent"}) and not view.revoked
    assert view.public_key == "UKEY" and access.by_public_key("UKEY") is view
    assert view.api_tokens == {"tk1": ("read", "digest-2")}
