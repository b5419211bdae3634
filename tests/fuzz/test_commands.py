"""Hostile payloads on every command subject: a coded reply, and nothing written.

About 900 generated payloads per subject (FUZZ_EXAMPLES to change it): malformed bytes,
bodies over 64 KiB, wrong types, missing and unknown fields, odd unicode, deep nesting,
ids with dots and wildcards, numbers out of range, NaN and Infinity, and well-formed
commands that the world's state refuses (unknown agents and tasks, forged and foreign
tokens, conflicting resubmissions) or accepts as documented no-op repeats.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

from infra.names import COMMANDS
from tests.fuzz import payloads as p
from tests.fuzz.world import World, on_loop, probe_once, probes_for, run_hypothesis, still_serving

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "900"))

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize("command", COMMANDS)
async def test_hostile_payloads_get_a_coded_refusal_and_write_nothing(world: World,
                                                                      command: str) -> None:
    strategy = probes_for(world, command)

    @FUZZ_SETTINGS
    @given(probe=strategy)
    def fuzz(probe: p.Probe) -> None:
        on_loop(world.loop, probe_once(world, command, probe))

    await run_hypothesis(fuzz)
    await still_serving(world)


def test_every_command_subject_has_a_payload_spec() -> None:
    assert set(p.SPECS) == set(COMMANDS)
