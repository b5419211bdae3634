"""The leader lease on a real nats-server: a renewal that was written but not seen
acknowledged (a timeout on a busy server) does not cost the lease; another holder's
entry does."""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError

from services.leader.lease import KEY, LeaderLease
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
