"""The failover reactor's reactions: one agent's in order, and all of them stopped when
the lead is lost (not only each agent's latest)."""

from __future__ import annotations

import asyncio
from typing import Any

from services.leader.failover import FailoverReactor
from tests.support import eventually


class Acked:
    def __init__(self, name: str, acks: list[str]) -> None:
        self.name, self.acks = name, acks

    async def ack(self) -> None:
        self.acks.append(self.name)

    async def nak(self, delay: float | None = None) -> None:
        self.acks.append(f"given back: {self.name}")


def reactor_with(react: Any) -> FailoverReactor:
    reactor = FailoverReactor.__new__(FailoverReactor)  # no NATS needed for these
    reactor._reacting, reactor._running = {}, set()
    reactor.react = react  # type: ignore[method-assign]
    return reactor


async def test_one_agents_events_are_handled_in_order_and_acknowledged() -> None:
    started: list[str] = []
    handled: list[str] = []
    acks: list[str] = []
    first_may_finish = asyncio.Event()

    async def react(event: str) -> None:
        started.append(event)
        if event == "e1":
            await first_may_finish.wait()
        handled.append(event)

    reactor = reactor_with(react)
    reactor._react_after("a", [(Acked("e1", acks), "e1")])  # type: ignore[list-item]
    reactor._react_after("a", [(Acked("e2", acks), "e2")])  # type: ignore[list-item]
    await eventually(lambda: started == ["e1"])
    assert handled == [] and reactor._reacting["a"] in reactor._running  # e2 waits for e1
    first_may_finish.set()
    await asyncio.gather(*list(reactor._running))
    assert handled == ["e1", "e2"] and acks == ["e1", "e2"]
    assert reactor._reacting == {} and reactor._running == set()


async def test_losing_the_lead_stops_every_reaction_including_earlier_ones() -> None:
    started: list[str] = []
    never = asyncio.Event()

    async def react(event: str) -> None:
        started.append(event)
        await never.wait()  # a move still being written

    reactor = reactor_with(react)
    acks: list[str] = []
    reactor._react_after("a", [(Acked("e1", acks), "e1")])  # type: ignore[list-item]
    reactor._react_after("a", [(Acked("e2", acks), "e2")])  # type: ignore[list-item]
    await eventually(lambda: started == ["e1"])
    earlier = [r for r in reactor._running if r is not reactor._reacting["a"]]
    await reactor._stop_reactions()
    # Neither acknowledged; both given back at once, for the next leader.
    assert started == ["e1"] and sorted(acks) == ["given back: e1", "given back: e2"]
    assert earlier and all(r.cancelled() for r in earlier)
    assert reactor._running == set()
