"""Hostile payloads on every command subject: a coded reply, and nothing written.

About 640 generated payloads per command endpoint of services/commands/table.py (agents',
submitters' and operators', and the catalog query: some 11,000 in all; FUZZ_EXAMPLES to
change it, `make fuzz` sends 3000 each):
malformed bytes, bodies over 64 KiB, wrong types, missing and unknown fields, odd unicode,
deep nesting, ids with dots and wildcards, numbers out of range, NaN and Infinity;
subjects whose sender token (an agent's id, a client's identity) is not an id; agents'
bodies naming another agent than their subject; and well-formed commands that the
world's state refuses (unknown agents, tasks and identities, forged and foreign tokens,
conflicting resubmissions, reserved and taken identity names) or accepts as documented
no-op repeats.
"""

from __future__ import annotations

import os

import nats.errors
import pytest
from hypothesis import HealthCheck, given, settings

from infra import names as n
from infra.names import AGENT_COMMANDS, CATALOG_QUERY, CLIENT_COMMANDS
from tests.fuzz.checks import (
    assert_nothing_written,
    on_loop,
    probe_once,
    run_hypothesis,
    still_serving,
)
from tests.fuzz.endpoints import COMMANDS, MODELS, subject_of
from tests.fuzz.payloads import probe as p
from tests.fuzz.payloads.commands import SPECS
from tests.fuzz.probes import probes_for
from tests.fuzz.world import World

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "640"))

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example, HealthCheck.filter_too_much],
)
# A share of the examples, of the same kinds, for the schedule commands: they come
# together (pause, resume and delete share one model and its checks), and each endpoint
# costs make test's time; `make fuzz` still sends hundreds to each.
FEWER = {n.SCHEDULE_CREATE: 2, n.SCHEDULE_PAUSE: 4, n.SCHEDULE_RESUME: 8,
         n.SCHEDULE_DELETE: 8, n.SCHEDULE_LIST: 4}


@pytest.mark.parametrize("command", COMMANDS)
async def test_hostile_payloads_get_a_coded_refusal_and_write_nothing(world: World,
                                                                      command: str) -> None:
    strategy = probes_for(world, command)

    @settings(FUZZ_SETTINGS, max_examples=max(50, EXAMPLES // FEWER.get(command, 1)))
    @given(probe=strategy)
    def fuzz(probe: p.Probe) -> None:
        on_loop(world.loop, probe_once(world, command, probe))

    await run_hypothesis(fuzz)
    await still_serving(world)


def test_every_command_subject_has_a_payload_spec() -> None:
    assert set(SPECS) == set(COMMANDS)
    assert set(COMMANDS) == {*AGENT_COMMANDS, *CLIENT_COMMANDS, CATALOG_QUERY}


@pytest.mark.parametrize("command", COMMANDS)
def test_each_payload_spec_has_every_field_of_its_model(command: str) -> None:
    """A field the model gains is fuzzed too (its spec says what it takes and refuses)."""
    assert SPECS[command].names == set(MODELS[command].model_fields)


async def test_a_sender_of_several_tokens_reaches_no_endpoint(world: World) -> None:
    """An id with a dot in it makes a subject no command endpoint listens on: nothing
    answers, nothing is written."""
    before = await world.orch.store.last_position()
    for sender in ("a.b", f"{World.live}.x", "a.>", f"{World.worker}.task"):
        for command in (*AGENT_COMMANDS, *CLIENT_COMMANDS):
            with pytest.raises(nats.errors.NoRespondersError):
                await world.nc.request(subject_of(world.names, command, sender), b"{}",
                                       timeout=5)
    await assert_nothing_written(world, before, "senders of several tokens")
