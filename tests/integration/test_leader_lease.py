"""The leader lease on a real nats-server: a renewal that was written but not seen
acknowledged (a timeout on a busy server) does not cost the lease; another holder's
entry does. A standby takes the lease a TTL after the last renewal it saw, by itself (not
when the server gets round to expiring the entry, nor at its next poll), and cannot take
one renewed meanwhile.

No wall-clock thresholds here: what is asserted is what the standby did (its attempts,
the entry it wrote over, the moment it was due), on a bucket whose entries the server
keeps far longer than the lease's TTL, so that only the standby's own rule can move it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, cast

from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from services.leader.lease import KEY, LeaderLease, Seen
from tests.support import eventually

TTL = 5.0


class Hooks:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def elected(self) -> None:
        self.calls.append("elected")

    async def deposed(self) -> None:
        self.calls.append("deposed")


def lease(nc: Client, names: Any, holder: str, hooks: Hooks) -> LeaderLease:
    return LeaderLease(nc.jetstream(), names, holder, TTL, hooks.elected, hooks.deposed)


async def test_a_renewal_written_but_not_seen_keeps_the_lease(nc: Client, names: Any) -> None:
    hooks = Hooks()
    mine = lease(nc, names, "holder-a", hooks)
    bucket = await mine._bucket()
    await mine._step(bucket)
    assert mine.is_leader and hooks.calls == ["elected"]
    # The renewal the server wrote while our request timed out: our revision is stale.
    await bucket.update(KEY, b"holder-a", mine._revision)

    await mine._step(bucket)
    assert mine.is_leader and hooks.calls == ["elected"]
    await mine._step(bucket)  # and renewals go on from the adopted revision
    assert mine.is_leader and hooks.calls == ["elected"]
    entry = await bucket.get(KEY)
    assert entry.value == b"holder-a" and entry.revision == mine._revision


async def test_another_holders_entry_deposes(nc: Client, names: Any) -> None:
    hooks, theirs = Hooks(), Hooks()
    mine = lease(nc, names, "holder-a", hooks)
    bucket = await mine._bucket()
    await mine._step(bucket)
    # Our entry expired and another orchestrator created its own.
    await bucket.delete(KEY)
    other = lease(nc, names, "holder-b", theirs)
    await other._step(bucket)
    assert other.is_leader

    await mine._step(bucket)
    assert not mine.is_leader and hooks.calls == ["elected", "deposed"]
    await mine._step(bucket)  # and it does not take the lease back while theirs lives
    assert not mine.is_leader and hooks.calls == ["elected", "deposed"]


async def test_an_entry_that_expired_while_renewals_were_delayed_is_taken_back(
        nc: Client, names: Any) -> None:
    """A stall of the bus longer than the TTL: our renewals' answers were lost, and the
    entry expired meanwhile. Nobody else holds it, so it is not a reason to step down."""
    hooks = Hooks()
    mine = LeaderLease(nc.jetstream(), names, "holder-a", 1.0, hooks.elected, hooks.deposed)
    bucket = await mine._bucket()
    await mine._step(bucket)
    assert mine.is_leader
    await bucket.update(KEY, b"holder-a", mine._revision)  # written, its answer lost

    async def expired() -> bool:
        try:
            await bucket.get(KEY)
        except KeyNotFoundError:
            return True
        return False

    await eventually(expired, timeout=10, what="the entry expired")
    await mine._step(bucket)
    assert mine.is_leader and hooks.calls == ["elected"]
    entry = await bucket.get(KEY)
    assert entry.value == b"holder-a" and entry.revision == mine._revision


# The lease's TTL in the standby tests, and the max_age of their bucket: the server does
# not expire an entry during a test, so a standby that waited for that would never lead.
SHORT_TTL = 1.0
SERVER_KEEPS = 120.0


async def long_lived_bucket(nc: Client, names: Any) -> KeyValue:
    return await nc.jetstream().create_key_value(
        bucket=names.leader_bucket, history=1, ttl=SERVER_KEEPS)


async def stopped(task: asyncio.Task[None]) -> None:
    """The process dies: its lease task ends without giving the lease up."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_standby_takes_over_the_last_renewal_it_saw_once_it_went_a_ttl_unrenewed(
        nc: Client, names: Any) -> None:
    bucket = await long_lived_bucket(nc, names)
    a_hooks, b_hooks = Hooks(), Hooks()
    a = LeaderLease(nc.jetstream(), names, "holder-a", SHORT_TTL, a_hooks.elected,
                    a_hooks.deposed)
    b = LeaderLease(nc.jetstream(), names, "holder-b", SHORT_TTL, b_hooks.elected,
                    b_hooks.deposed)
    running_a = asyncio.create_task(a.run())
    await eventually(lambda: a.is_leader, what="a leads")
    running_b = asyncio.create_task(b.run())
    try:
        await eventually(lambda: b._seen is not None, what="b saw a's entry")
        assert b._seen is not None
        attempts, first = b.attempts, b._seen.revision
        await eventually(lambda: b._seen is not None and b._seen.revision >= first + 3,
                         what="b watched three more renewals")
        # While a renews, b only watches: no attempt (it polled every TTL/3 before).
        assert b.attempts == attempts and not b.is_leader

        await stopped(running_a)  # killed: no release; the server keeps its entry
        await eventually(lambda: b.is_leader, timeout=30, what="b takes the lease")
        takeover = b.takeover
        assert takeover is not None and (await bucket.get(KEY)).value == b"holder-b"
        # One attempt, due a TTL after b first saw a's last renewal, written over it (and
        # one more for each read a loaded machine answered late: counted again from it).
        assert b.attempts == attempts + 1 + b.postponed
        assert takeover.revision >= first + 3 and takeover.written == takeover.revision + 1
        assert takeover.due == takeover.seen_at + SHORT_TTL
        assert takeover.tried_at >= takeover.due
        assert b_hooks.calls == ["elected"]
    finally:
        await stopped(running_a)
        await stopped(running_b)


async def test_a_released_lease_is_taken_at_once_from_the_watch(nc: Client, names: Any) -> None:
    """A clean shutdown deletes the entry: the watch delivers the delete and the standby
    creates the entry then, not a TTL later (a TTL of two minutes here)."""
    bucket = await long_lived_bucket(nc, names)
    a_hooks, b_hooks = Hooks(), Hooks()
    a = LeaderLease(nc.jetstream(), names, "holder-a", SERVER_KEEPS, a_hooks.elected,
                    a_hooks.deposed)
    b = LeaderLease(nc.jetstream(), names, "holder-b", SERVER_KEEPS, b_hooks.elected,
                    b_hooks.deposed)
    await a._step(bucket)
    assert a.is_leader
    running_b = asyncio.create_task(b.run())
    try:
        await eventually(lambda: b._seen is not None, what="b saw a's entry")
        attempts = b.attempts
        await a.release()
        await eventually(lambda: b.is_leader, timeout=30, what="b takes the released lease")
        assert b.attempts == attempts + 1
        assert b.takeover is not None and b.takeover.revision == 0  # created, not taken over
        assert (await bucket.get(KEY)).value == b"holder-b"
    finally:
        await stopped(running_b)


async def test_a_standby_that_missed_renewals_cannot_take_the_lease(nc: Client,
                                                                     names: Any) -> None:
    """A standby whose own path stalled saw an old revision a TTL ago; the holder renewed
    meanwhile. Its compare-and-set names the old revision and fails: it learns the entry
    that is there, and waits a TTL from now for it."""
    bucket = await long_lived_bucket(nc, names)
    a_hooks, b_hooks = Hooks(), Hooks()
    a = LeaderLease(nc.jetstream(), names, "holder-a", SHORT_TTL, a_hooks.elected,
                    a_hooks.deposed)
    b = LeaderLease(nc.jetstream(), names, "holder-b", SHORT_TTL, b_hooks.elected,
                    b_hooks.deposed)
    await a._step(bucket)
    old = a._revision
    await a._step(bucket)  # a renewal b did not see
    b._seen = Seen(old, time.monotonic() - 10 * SHORT_TTL)

    await b._step(bucket)
    assert not b.is_leader and b.attempts == 1 and b_hooks.calls == []
    assert b._seen is not None and b._seen.revision == a._revision
    await b._step(bucket)  # not due again until a TTL after it learned the renewal
    assert b.attempts == 1
    assert a.is_leader and (await bucket.get(KEY)).value == b"holder-a"


class HeldUpReads:
    """The bucket as a held-up bus answers it: a read answered `delay` late."""

    def __init__(self, bucket: KeyValue, delay: float) -> None:
        self.bucket, self.delay = bucket, delay

    async def get(self, key: str) -> KeyValue.Entry:
        await asyncio.sleep(self.delay)
        return await self.bucket.get(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bucket, name)


async def test_a_read_answered_late_counts_the_ttl_again(nc: Client, names: Any) -> None:
    """The standby reads the entry before writing over it. Answered later than a renewal
    period, the bus was held up and renewals may be waiting in it: nothing is written,
    and the TTL is counted again from the answer (a stall hands no lease over)."""
    bucket = await long_lived_bucket(nc, names)
    a_hooks, b_hooks = Hooks(), Hooks()
    a = LeaderLease(nc.jetstream(), names, "holder-a", SHORT_TTL, a_hooks.elected,
                    a_hooks.deposed)
    b = LeaderLease(nc.jetstream(), names, "holder-b", SHORT_TTL, b_hooks.elected,
                    b_hooks.deposed)
    await a._step(bucket)
    b._seen = Seen(a._revision, time.monotonic() - 10 * SHORT_TTL)  # due long ago

    await b._step(cast(KeyValue, HeldUpReads(bucket, SHORT_TTL / 2)))
    assert not b.is_leader and b.attempts == 1 and b.postponed == 1
    assert b._seen is not None and b._seen.revision == a._revision
    await b._step(bucket)  # not due: a TTL from the late answer
    assert b.attempts == 1 and not b.is_leader and b_hooks.calls == []
    assert (await bucket.get(KEY)).value == b"holder-a"
