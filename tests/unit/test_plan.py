"""A round's plan gives what `choose` over the updated fleet gives, task after task."""

from __future__ import annotations

import heapq
import random

import pytest

from domain.tasks.placement import Candidate, Strategy, choose
from domain.tasks.plan import Plan

CAPABILITIES = [frozenset(), frozenset({"cpu"}), frozenset({"cpu", "gpu"})]
KINDS = [frozenset(), frozenset({"render"}), frozenset({"render", "encode"})]


def fleet(rng: random.Random, size: int) -> dict[str, Candidate]:
    candidates = {}
    for i in range(size):
        capacity = rng.choice([1, 2, 4, 10])
        agent_id = f"a{rng.randrange(10_000):04d}-{i}"
        candidates[agent_id] = Candidate(
            agent_id, 1, rng.choice(CAPABILITIES), capacity, rng.randrange(capacity + 1),
            "healthy", rng.choice(KINDS))
    return candidates


@pytest.mark.parametrize("strategy", list(Strategy))
@pytest.mark.parametrize("seed", range(20))
def test_a_round_of_placements_matches_choose_each_time(strategy: Strategy, seed: int) -> None:
    rng = random.Random(seed)
    candidates = fleet(rng, rng.randrange(1, 60))
    reference = dict(candidates)
    plan = Plan(dict(candidates), strategy)
    cursor = ""
    for _ in range(rng.randrange(1, 120)):
        requires = rng.choice([[], ["cpu"], ["gpu"], ["cpu", "gpu"]])
        kind = rng.choice([None, "render", "encode", "other"])
        expected = choose(list(reference.values()), requires, strategy, cursor, kind=kind)
        # What a placement records as considered: the eight least loaded, then by id.
        assert plan.considered() == heapq.nsmallest(
            8, reference.values(), key=lambda c: (c.load, c.agent_id))
        got = plan.choose(requires, kind, cursor)
        assert got == expected
        if got is None:
            continue
        cursor = got.agent_id
        plan.take(got.agent_id)
        reference[got.agent_id] = Candidate(
            got.agent_id, got.incarnation, got.capabilities, got.capacity, got.load + 1,
            got.status, got.kinds)


@pytest.mark.parametrize("strategy", [Strategy.LEAST_LOADED, Strategy.BIN_PACK])
@pytest.mark.parametrize("seed", range(10))
def test_selectors_and_preferences_match_choose_past_the_heaps_kept(strategy: Strategy,
                                                                  seed: int) -> None:
    """Labels as placement reads them, with more distinct selectors than the plan keeps
    heaps for (domain.tasks.plan.MAX_SHAPES): still what `choose` gives."""
    rng = random.Random(seed)
    zones = [f"z{i}" for i in range(6)]
    candidates = {
        c.agent_id: Candidate(c.agent_id, 1, c.capabilities, c.capacity, c.load, "healthy",
                              c.kinds, {"zone": rng.choice(zones), "rack": str(i % 40)})
        for i, c in enumerate(fleet(rng, rng.randrange(1, 60)).values())}
    reference = dict(candidates)
    plan = Plan(dict(candidates), strategy)
    for _ in range(rng.randrange(50, 200)):
        selector = rng.choice([(), (("zone", rng.choice(zones)),),
                               (("rack", str(rng.randrange(80))),)])
        prefer = rng.choice([(), (("zone", rng.choice(zones)),)])
        expected = choose(list(reference.values()), [], strategy, selector=selector,
                          prefer=prefer)
        got = plan.choose([], None, "", selector, prefer)
        assert got == expected
        if got is not None:
            plan.take(got.agent_id)
            reference[got.agent_id] = Candidate(
                got.agent_id, 1, got.capabilities, got.capacity, got.load + 1, got.status,
                got.kinds, got.labels)
