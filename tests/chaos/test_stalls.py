"""The bus-stall matrix (`make chaos`): the nats-server frozen, the path to it stopped
(orchestrator and agents), and the orchestrator's path alone, for 2 to 40 seconds.

Each case runs REPEATS cells on one stall, in parallel: each an orchestrator of its own
(own prefix, own connections, own timers, so its own timing against the stall) with five
live agents heartbeating through the SDK throughout and one agent that really dies, at a
random moment before or during the stall. Every cell must show no false death, no task
moved off a live agent, the lease kept, and the dead agent declared within dead_after
plus the catch-up after the bus returned (`tests/stalls.py`).

STALL_SEED=<n> replays a run's death moments; each case prints what every cell measured.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.stalls import Bus, Cell, Fault, check, run_stall

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

STALLS_S = [2, 5, 8, 12, 16, 25, 40]
REPEATS = int(os.environ.get("STALL_REPEATS", "3"))
SEED = int(os.environ.get("STALL_SEED", random.SystemRandom().randrange(2**32)))


def death_moments(rng: random.Random, stall_s: float, count: int) -> list[float]:
    """Seconds from the stall's start: one just before it (silent when it begins), the
    others anywhere during it."""
    moments = [-rng.uniform(0.1, 0.9)]
    moments += [rng.uniform(0.0, stall_s) for _ in range(count - 1)]
    return moments[:count]


@pytest.mark.parametrize("stall_s", STALLS_S)
@pytest.mark.parametrize("fault", list(Fault))
async def test_no_false_death_in_a_bus_stall(own_server, tmp_path, fault, stall_s):
    rng = random.Random(f"{SEED}-{fault}-{stall_s}")
    print(f"STALL_SEED={SEED}")
    bus = Bus(own_server, fault, tmp_path)
    bus.start()
    # Started up to a ping interval apart (5 s), so that each orchestrator meets the
    # stall at another point of its timers: pings, lease renewals, looks at the bus.
    cells = [Cell(bus, tmp_path, dies_at=moment, start_after=rng.uniform(0, 5) if i else 0.0)
             for i, moment in enumerate(death_moments(rng, stall_s, REPEATS))]
    check(await run_stall(bus, cells, stall_s))
