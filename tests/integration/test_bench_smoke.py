"""Every benchmark scenario runs at a tiny size and reports: they cannot rot unseen.

Nothing here asserts speed; `make bench` measures that."""

from __future__ import annotations

import importlib
import math

import pytest

from bench.cli import SCENARIOS
from bench.sizes import TINY


@pytest.mark.parametrize("name", SCENARIOS)
async def test_scenario_runs_and_reports(name):
    module = importlib.import_module(f"bench.scenarios.{name}")
    result = await module.run(TINY)

    assert result, f"{name} reported nothing"
    if "skipped" in result:  # a missing tool (wrk, PostgreSQL) is said, not faked
        assert isinstance(result["skipped"], str) and result["skipped"]
        return
    numbers = [v for k, v in result.items() if v is not None and not k.endswith("_skipped")]
    assert numbers and all(isinstance(v, int | float) and math.isfinite(v) for v in numbers)
