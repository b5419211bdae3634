"""Every benchmark scenario runs at a tiny size and reports: they cannot rot unseen.

Nothing here asserts speed; `make bench` measures that."""

from __future__ import annotations

import importlib
import math

import pytest

from bench.cli import SCENARIOS
from bench.flow_placement import placement_cpu
from bench.sizes import TINY

# Longer than a smoke test may take even at the tiny size (five orchestrators, RSS let
# settle): their parts are smoked below instead.
SLOW = {"flow"}


@pytest.mark.parametrize("name", [name for name in SCENARIOS if name not in SLOW])
async def test_scenario_runs_and_reports(name):
    module = importlib.import_module(f"bench.scenarios.{name}")
    result = await module.run(TINY)

    assert result, f"{name} reported nothing"
    if "skipped" in result:  # a missing tool (wrk, PostgreSQL) is said, not faked
        assert isinstance(result["skipped"], str) and result["skipped"]
        return
    numbers = [v for k, v in result.items() if v is not None and not k.endswith("_skipped")]
    assert numbers and all(isinstance(v, int | float) and math.isfinite(v) for v in numbers)


def test_flow_placement_measure_runs_on_the_dispatcher_as_it_is():
    """The in-process part of `flow` drives the dispatcher's own round: it breaks first
    when that changes."""
    limited = placement_cpu(TINY.flow_waiting, TINY.flow_keys, 1, 0.9, TINY.flow_decisions)
    unlimited = placement_cpu(TINY.flow_waiting, TINY.flow_keys, 1, 0.9,
                              TINY.flow_decisions, limited=False)

    # The keys at their limit are parked once, not walked every round: after the first,
    # a decision meets at most the key a completion let back in.
    held = int(TINY.flow_keys * 0.9)
    assert held - 1 <= limited["keys_parked"] <= held
    assert limited["lanes_set_aside_p50"] <= 1
    assert unlimited["lanes_set_aside_p50"] == 0 and unlimited["keys_parked"] == 0
    assert all(math.isfinite(v) and v > 0 for v in (limited["p99"], unlimited["p99"]))
