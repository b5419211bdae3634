"""Bus stalls (issue 19): the nats-server frozen, or the path to it stopped without
closing, while agents heartbeat throughout. No live agent is declared dead, no task moves
off one, the orchestrator keeps its lease, and an agent that really died during the stall
is declared dead within dead_after plus the catch-up after the bus returns.

The short version of the chaos matrix (`tests/chaos/test_stalls.py`): one cell per case.
"""

from __future__ import annotations

import pytest

from tests.stalls import Bus, Cell, Fault, check, run_stall

pytestmark = pytest.mark.timeout(90)


async def test_a_12_second_server_freeze_declares_no_live_agent_dead(own_server, tmp_path):
    """The reported case: every agent was declared dead ~20 ms after the server resumed."""
    bus = Bus(own_server, Fault.SERVER, tmp_path)
    bus.start()
    check(await run_stall(bus, [Cell(bus, tmp_path, dies_at=5.0)], stall_s=12.0))


async def test_a_stalled_path_to_nats_declares_no_live_agent_dead(own_server, tmp_path):
    """The orchestrator's and the agents' paths to NATS stop forwarding, nothing closed."""
    bus = Bus(own_server, Fault.PATH, tmp_path)
    bus.start()
    check(await run_stall(bus, [Cell(bus, tmp_path, dies_at=2.0)], stall_s=5.0))


async def test_a_stalled_orchestrator_path_declares_no_live_agent_dead(own_server, tmp_path):
    """Only the orchestrator's path stalls: the agents' heartbeats reach the stream, and
    the orchestrator sees them only when the path heals (and the lease expired)."""
    bus = Bus(own_server, Fault.ORCHESTRATOR_PATH, tmp_path)
    bus.start()
    check(await run_stall(bus, [Cell(bus, tmp_path, dies_at=-0.3)], stall_s=3.0))
