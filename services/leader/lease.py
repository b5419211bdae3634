"""The leader lease: one orchestrator at a time runs the monitor, dispatcher and failover.

A key in a JetStream KV bucket whose entries live for the lease TTL. The holder renews it
every TTL/3 with a compare-and-set on its revision. The lease only avoids wasted work: two
leaders for a moment are harmless, because every decision is an OCC append.

A standby watches the key (a KV watch: each renewal is delivered as it is written) and
tries to take the lease once the last entry it saw has gone a TTL unrenewed, counted from
when it saw it (after it was written: never early, whatever the clocks say), by a
compare-and-set over that entry's revision. That succeeds only if the holder wrote nothing
since: the rule the server's own expiry applies, without waiting for it (nats-server
removes an expired entry about 250 ms late, measured on 2.15; no event tells a watcher
of it unless the bucket places markers) nor for a poll (it polled every TTL/3 before:
a successor up to 4/3 TTL after the last renewal, docs/how-it-works.md). An entry already
gone (expired; or deleted by a clean shutdown, which the watch delivers) is created. A
failed attempt reads the entry, so a watch that missed a renewal costs one TTL, not the
lease's safety; the watch is then made again. Before writing, the standby reads the entry:
if the read is answered later than a renewal period, the bus (or this process) was held
up and renewals may be waiting in it; that time does not count, and the TTL is counted
again from the answer (docs/stalls.md): a stall of the bus does not hand the lease over.

The holder gives the lease up only when it sees another holder's entry. A renewal that
times out (the bus stalled) says nothing: it may have been written, or the entry may
have expired meanwhile; the next step finds out, and takes an expired entry back. A
stalled standby cannot take a lease that was renewed meanwhile: its compare-and-set
names a revision the holder has written over (docs/stalls.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from infra.names import Names

log = logging.getLogger(__name__)

KEY = "leader"
Hook = Callable[[], Awaitable[None]]
# After an attempt that changed nothing, the next one waits this long at least (an entry
# the server has not removed yet, or one the watch has not delivered): no busy loop.
RETRY_S = 0.05
STOP_WAIT_S = 1.0  # a watch's end waited for at most (it never blocks the lease's loop)


@dataclass(frozen=True)
class Seen:
    """Another holder's entry, as this standby first saw it (monotonic clock)."""

    revision: int
    at: float


@dataclass(frozen=True)
class Takeover:
    """How this process took the lease last: over which entry (0: none, created), the
    revision it wrote, when it had first seen that entry, when it was due (seen + TTL) and
    when it tried."""

    revision: int
    written: int
    seen_at: float
    due: float
    tried_at: float


class LeaderLease:
    def __init__(self, js: JetStreamContext, names: Names, holder: str, ttl: float,
                 on_elected: Hook, on_deposed: Hook, replicas: int = 1) -> None:
        self.js = js
        self.names = names
        self.holder = holder
        self.ttl = ttl
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.replicas = replicas
        self.is_leader = False
        self._revision = 0
        self._seen: Seen | None = None  # None: no entry known; try to create it at once
        self._not_before = 0.0
        self._news = asyncio.Event()
        self._watched = 0  # the newest revision the watch delivered
        self._watch_again = False
        # What the standby did, for tests and the log: attempts to take the lease (while
        # another holder renews: none) and how it took it last.
        self.attempts = 0
        self.postponed = 0  # attempts not made: the bus answered late (held up)
        self.takeover: Takeover | None = None

    async def _bucket(self) -> KeyValue:
        try:
            return await self.js.key_value(self.names.leader_bucket)
        except BucketNotFoundError:
            return await self.js.create_key_value(
                bucket=self.names.leader_bucket, history=1, ttl=self.ttl,
                description="orchestrator leader lease", replicas=self.replicas,
            )

    async def run(self) -> None:
        bucket: KeyValue | None = None
        watch: KeyWatch | None = None
        try:
            while True:
                pause = self.ttl / 3
                try:
                    if bucket is None:
                        bucket = await self._bucket()
                    if watch is None or watch.ended or self._watch_again:
                        if watch is not None:
                            await watch.stop()
                        self._watch_again = False
                        watch = KeyWatch(bucket, self._saw)
                    if self.is_leader:
                        await self._step(bucket)
                    else:
                        pause = await self._stand_by(bucket)
                except (TimeoutError, nats.errors.Error) as exc:
                    log.debug("lease step failed: %r", exc)
                    bucket = None
                if pause > 0:
                    await asyncio.sleep(pause)
        finally:
            if watch is not None:
                await watch.stop()

    async def _stand_by(self, bucket: KeyValue) -> float:
        """Wait for the entry seen last to be due, or for news of the key; then try."""
        self._news.clear()
        wait = self._due() - time.monotonic()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), wait)
            return 0.0  # due, or news: look again
        await self._step(bucket)
        return 0.0

    def _due(self) -> float:
        seen = self._seen
        due = seen.at + self.ttl if seen is not None else 0.0
        return max(due, self._not_before)

    def _saw(self, entry: KeyValue.Entry) -> None:
        """An entry the watch delivered."""
        self._watched = max(self._watched, entry.revision or 0)
        if entry.operation in (KV_DEL, KV_PURGE) or entry.value == self.holder.encode():
            self._seen = None  # deleted: take it at once (ours: adopt it)
        elif entry.revision is not None and (self._seen is None
                                             or self._seen.revision != entry.revision):
            self._seen = Seen(entry.revision, time.monotonic())
        self._news.set()

    async def _step(self, bucket: KeyValue) -> None:
        if self.is_leader:
            try:
                self._revision = await bucket.update(KEY, self.holder.encode(), self._revision)
            except KeyWrongLastSequenceError:
                await self._renew_after_a_lost_answer(bucket)
            return
        if time.monotonic() < self._due():
            return  # another holder's entry has not gone a TTL unrenewed
        await self._try_to_take(bucket)

    async def _try_to_take(self, bucket: KeyValue) -> None:
        seen, due, tried = self._seen, self._due(), time.monotonic()
        self.attempts += 1
        if seen is not None and not await self._unrenewed(bucket, seen):
            return
        try:
            if seen is None:
                self._revision = await bucket.create(KEY, self.holder.encode())
            else:  # written over the entry seen, only if it is still the last one
                self._revision = await bucket.update(KEY, self.holder.encode(), seen.revision)
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            # Renewed, expired or created meanwhile (a create's own read of the entry can
            # find it expired: KeyNotFoundError): read what is there.
            self._not_before = time.monotonic() + RETRY_S
            if not await self._learn(bucket, seen):
                return
        else:
            self.takeover = Takeover(seen.revision if seen else 0, self._revision,
                                     seen.at if seen else tried, due, tried)
            if seen is not None:  # how long the entry went unrenewed, as this one saw it
                await self._elected(f" unrenewed={time.monotonic() - seen.at:.3f}s")
                return
        await self._elected()

    async def _unrenewed(self, bucket: KeyValue, seen: Seen) -> bool:
        """Before writing over the entry seen: whether it is still the last one, read
        from a bus that answered within a renewal period. A later answer means the bus (or
        this process) was held up, and renewals may be waiting in it to be written: as the
        health monitor does with heartbeats (docs/stalls.md), time in which nothing could
        be seen does not count, and the TTL is counted again from the answer."""
        asked = time.monotonic()
        try:
            entry: KeyValue.Entry | None = await bucket.get(KEY)
        except KeyNotFoundError:
            entry = None
        answered = time.monotonic()
        revision = int(entry.revision) if entry is not None and entry.revision else None
        if answered - asked > self.ttl / 3:
            self.postponed += 1
            self._seen = Seen(revision or seen.revision, answered)
            log.info("leader lease takeover postponed holder=%s: the bus answered a read "
                     "after %.3fs", self.holder, answered - asked)
            return False
        if revision == seen.revision and entry is not None \
                and entry.value != self.holder.encode():
            return True
        if revision is None or entry is None or entry.value == self.holder.encode():
            self._seen = None  # gone (expired, deleted): created next; ours: adopted
        else:
            self._seen = Seen(revision, answered)  # renewed: the watch missed it
            if revision > self._watched:
                self._watch_again = True
        return False

    async def _learn(self, bucket: KeyValue, seen: Seen | None) -> bool:
        """After a failed attempt: the entry that is there. True if it names this holder
        (a write of ours whose answer was lost: adopted)."""
        try:
            entry = await bucket.get(KEY)
        except KeyNotFoundError:
            self._seen = None  # gone: create it next
            return False
        if entry.revision is None:
            return False
        if entry.value == self.holder.encode():
            self._revision = int(entry.revision)
            return True
        if seen is None or seen.revision != entry.revision:
            self._seen = Seen(int(entry.revision), time.monotonic())
            if entry.revision > self._watched:
                self._watch_again = True  # the watch did not deliver it: a new one
        return False

    async def _elected(self, how: str = "") -> None:
        self.is_leader = True
        self._seen = None
        log.info("leader lease acquired holder=%s%s", self.holder, how)
        await self.on_elected()

    async def _renew_after_a_lost_answer(self, bucket: KeyValue) -> None:
        """Our revision is not the entry's: a renewal of ours was written unseen, or the
        entry expired while the bus stalled (its answers lost), or another holder took
        it. Only the last is a reason to give the lease up."""
        try:
            entry = await bucket.get(KEY)
        except KeyNotFoundError:
            entry = None  # expired (or deleted): nobody holds it; take it back
        if entry is None or entry.value is None:
            try:
                self._revision = await bucket.create(KEY, self.holder.encode())
            except KeyWrongLastSequenceError:
                revision = await self._ours(bucket)  # created meanwhile: by whom?
                if revision is None:
                    await self._depose("another orchestrator took the lease after ours "
                                       "expired")
                else:
                    self._revision = revision
                return
            log.warning("leader lease renewed after it expired holder=%s (renewals delayed "
                        "past the TTL)", self.holder)
            return
        if entry.value == self.holder.encode() and entry.revision is not None:
            self._revision = int(entry.revision)  # a renewal of ours, answer lost
            return
        if entry.revision is not None:  # theirs, from now: taken back only if unrenewed
            self._seen = Seen(int(entry.revision), time.monotonic())
        await self._depose("another orchestrator holds the lease")

    async def _ours(self, bucket: KeyValue) -> int | None:
        """The entry's revision if it names this holder: a renewal of ours that timed out
        on a busy server but was written. Only this process writes its own name, so the
        lease is still ours; without this it would be given up until the entry expired."""
        try:
            entry = await bucket.get(KEY)
        except KeyNotFoundError:
            return None
        if entry.value != self.holder.encode() or entry.revision is None:
            return None
        return int(entry.revision)

    async def _depose(self, reason: str) -> None:
        self.is_leader = False
        log.warning("leader lease lost holder=%s: %s", self.holder, reason)
        await self.on_deposed()

    async def release(self) -> None:
        """Give the lease up at a clean shutdown, so a successor need not wait for the TTL."""
        if not self.is_leader:
            return
        self.is_leader = False
        try:
            bucket = await self._bucket()
            await bucket.delete(KEY, last=self._revision)
        except (TimeoutError, nats.errors.Error) as exc:
            log.debug("lease release failed: %r", exc)
        await self.on_deposed()



class KeyWatch:
    """The lease key's entries as they are written, handed to `saw`. Stopped by stopping
    the KV watcher, not by cancelling its task: nats.py swallows a cancellation that
    lands in its subscribe (its flush), and the task would then wait on a watcher nobody
    stops (seen: a standby that never tried again)."""

    def __init__(self, bucket: KeyValue, saw: Callable[[KeyValue.Entry], None]) -> None:
        self._watcher: KeyValue.KeyWatcher | None = None
        self._stopped = False
        self._task = asyncio.create_task(self._run(bucket, saw))

    @property
    def ended(self) -> bool:
        return self._task.done()

    async def _run(self, bucket: KeyValue, saw: Callable[[KeyValue.Entry], None]) -> None:
        try:
            self._watcher = await bucket.watch(KEY)
            if self._stopped:
                return
            async for entry in self._watcher:
                if entry is not None:  # None: the current entry (or none) delivered
                    saw(entry)
        except Exception as exc:  # the bus's errors, whatever their class: watched again
            log.debug("lease watch ended: %r", exc)
        finally:
            await self._stop_watcher()

    async def _stop_watcher(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            with contextlib.suppress(Exception):
                await watcher.stop()

    async def stop(self) -> None:
        self._stopped = True
        if self._watcher is not None:
            await self._stop_watcher()  # its iteration ends
        else:
            self._task.cancel()  # still subscribing: ends when it has (see above)
        await asyncio.wait({self._task}, timeout=STOP_WAIT_S)
