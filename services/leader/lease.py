"""The leader lease: one orchestrator at a time runs the monitor, dispatcher and failover.

A key in a JetStream KV bucket whose entries live for the lease TTL. The holder renews it
every TTL/3 with a compare-and-set on its revision; when the holder stops renewing the
entry expires and another process can create it. The lease only avoids wasted work: two
leaders for a moment are harmless, because every decision is an OCC append.

The holder gives the lease up only when it sees another holder's entry. A renewal that
times out (the bus stalled) says nothing: it may have been written, or the entry may
have expired meanwhile; the next step finds out, and takes an expired entry back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from infra.names import Names

log = logging.getLogger(__name__)

KEY = "leader"
Hook = Callable[[], Awaitable[None]]


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
        while True:
            try:
                if bucket is None:
                    bucket = await self._bucket()
                await self._step(bucket)
            except (TimeoutError, nats.errors.Error) as exc:
                log.debug("lease step failed: %r", exc)
                bucket = None
            await asyncio.sleep(self.ttl / 3)

    async def _step(self, bucket: KeyValue) -> None:
        if self.is_leader:
            try:
                self._revision = await bucket.update(KEY, self.holder.encode(), self._revision)
            except KeyWrongLastSequenceError:
                await self._renew_after_a_lost_answer(bucket)
            return
        try:
            self._revision = await bucket.create(KEY, self.holder.encode())
        except KeyWrongLastSequenceError:
            revision = await self._ours(bucket)
            if revision is None:
                return  # held by someone else
            self._revision = revision
        self.is_leader = True
        log.info("leader lease acquired holder=%s", self.holder)
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
