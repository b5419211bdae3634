"""A key at its concurrency limit leaves the placement walks until it may place again
(projections/board/waiting.py, `Round.park`): random histories of submits, finishes,
requeues, limit changes, placements in flight and refused writes make exactly the
decisions a walk that looks at every held key each round makes."""

from __future__ import annotations

import random

import pytest

from bench.flow_placement import Board
from domain.tasks.placement import Strategy
from projections.board import waiting
from projections.board.key_gate import KeyGate
from projections.board.placing import decide


def history(seed: int) -> list[tuple[tuple[str, str], ...]]:
    rng = random.Random(seed)
    world = Board()
    keys = [f"k{i}" for i in range(12)]
    for key in keys[:8]:
        world.limit(key, concurrency=rng.randint(1, 3))
    for a in range(4):
        world.agent(f"a{a}", rng.randint(1, 4))
    fleet = world.fleet
    gate = KeyGate(world.limits, world.board.flow, lambda key: fleet.keys_in_flight.get(key, 0))
    open_tasks: list[str] = []
    in_flight: list[tuple[str, str]] = []
    decisions = []
    count = 0
    for _ in range(400):
        roll = rng.random()
        if roll < 0.35:
            for _ in range(rng.randint(1, 5)):
                count += 1
                world.submit(f"t{count}", f"s{rng.randrange(3)}", rng.choice([*keys, ""]))
        elif roll < 0.6 and open_tasks:
            world.complete(open_tasks.pop(rng.randrange(len(open_tasks))))
        elif roll < 0.65:
            concurrency = rng.choice([None, 0, 1, 2, 4])
            world.limit(rng.choice(keys),
                        **({} if concurrency is None else {"concurrency": concurrency}))
        elif roll < 0.7 and open_tasks:
            world.apply("task", open_tasks.pop(rng.randrange(len(open_tasks))), "Requeued",
                        from_agent="x", reason="r")
        walk = world.board.round(1e9)
        try:
            decided = decide(walk, world.board.tasks,
                             lambda: (fleet.plan(Strategy.LEAST_LOADED), fleet.free),
                             gate, 1e9, fleet.cursor, fleet.reserved)
        finally:
            walk.close()
        fleet.cursor = decided.cursor
        for task_id, agent_id in in_flight:  # written a step later, or refused
            fleet.release(task_id)
            if rng.random() < 0.8:
                world.assign(task_id, agent_id)
                open_tasks.append(task_id)
        in_flight = []
        placed = tuple((d.view.task_id, d.agent.agent_id) for d in decided.decisions)
        for (task_id, agent_id), decision in zip(placed, decided.decisions, strict=True):
            fleet.reserve(task_id, agent_id, decision.view.concurrency_key)
            if rng.random() < 0.4:
                in_flight.append((task_id, agent_id))
                continue
            fleet.release(task_id)
            if rng.random() < 0.8:
                world.assign(task_id, agent_id)
                open_tasks.append(task_id)
        decisions.append(placed)
    return decisions


@pytest.mark.parametrize("seed", range(8))
def test_parking_makes_the_decisions_of_a_walk_over_every_held_key(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    parks = []
    park = waiting.Round.park

    def counted(self: waiting.Round) -> None:
        parks.append(1)
        park(self)

    monkeypatch.setattr(waiting.Round, "park", counted)
    parked = history(seed)
    monkeypatch.setattr(waiting.Round, "park", waiting.Round.block)
    assert history(seed) == parked
    assert parks and sum(map(len, parked)) > 50  # keys were parked; work was placed
