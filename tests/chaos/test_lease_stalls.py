"""The leader lease through a frozen nats-server, with a standby (`make chaos`).

A holder and a standby (lease TTL 1 s) on a server SIGSTOPped for 2 to 5 s, at a moment
at random in the renewal period, twelve times. While it is frozen the holder's renewal
and the standby's attempt both wait in it; the standby reads the entry before writing and
takes an answer later than a renewal period for a stall (services/leader/lease.py), so the
renewal waiting in the server is written first and nobody steps down. Before (a standby
polling with creates), the server's expiry on waking let the standby's waiting create
win: this test saw the lease move in 5 of its 12 stalls.

Asserted on what happened (who was elected or deposed), not on times.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal

import nats
import pytest
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from infra.bus.embedded import EmbeddedNats
from infra.names import Names
from services.leader.lease import KEY, LeaderLease
from tests.support import eventually

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

TTL = 1.0
STALLS_S = [2, 3, 5] * 4
SEED = int(os.environ.get("STALL_SEED", random.SystemRandom().randrange(2**32)))


class Calls:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def elected(self) -> None:
        self.calls.append("elected")

    async def deposed(self) -> None:
        self.calls.append("deposed")


async def test_a_frozen_server_hands_no_lease_to_the_standby(own_server: EmbeddedNats) -> None:
    rng = random.Random(SEED)
    moved = []
    for n, stall_s in enumerate(STALLS_S):
        calls = await one_stall(own_server, Names(f"ls{n}"), stall_s, rng.uniform(0, TTL / 3))
        if calls != (["elected"], []):
            moved.append((stall_s, calls))
    assert moved == [], f"the lease moved (STALL_SEED={SEED}): {moved}"


async def one_stall(server: EmbeddedNats, names: Names, stall_s: float,
                    phase: float) -> tuple[list[str], list[str]]:
    """The holder's and the standby's calls (elected, deposed) through one stall."""
    holder_nc, standby_nc = await nats.connect(server.url), await nats.connect(server.url)
    holder, standby = Calls(), Calls()
    a = LeaderLease(holder_nc.jetstream(), names, "holder", TTL, holder.elected,
                    holder.deposed)
    b = LeaderLease(standby_nc.jetstream(), names, "standby", TTL, standby.elected,
                    standby.deposed)
    leases = [asyncio.create_task(a.run())]
    try:
        await eventually(lambda: a.is_leader, what="the holder leads")
        bucket = await holder_nc.jetstream().key_value(names.leader_bucket)
        leases.append(asyncio.create_task(b.run()))
        started = await revision(bucket)

        async def standing_by() -> bool:  # the standby has looked, and renewals go on
            return await revision(bucket) >= started + 2

        await eventually(standing_by, what="the standby stands by")
        await asyncio.sleep(phase)  # the stall begins anywhere in the renewal period
        os.kill(server.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(stall_s)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        before = await revision(bucket)

        async def renewed_twice() -> bool:
            return await revision(bucket) >= before + 2

        await eventually(renewed_twice, timeout=60, what="the lease renewed after the stall")
        return holder.calls, standby.calls
    finally:
        for lease in leases:
            lease.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lease
        await holder_nc.close()
        await standby_nc.close()


async def revision(bucket: KeyValue) -> int:
    try:
        entry = await bucket.get(KEY)
    except KeyNotFoundError:
        return 0
    return int(entry.revision or 0)
