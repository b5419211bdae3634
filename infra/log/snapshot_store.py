"""Projection snapshots kept in a JetStream object store, beside the log they summarise."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
from collections.abc import Sequence
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ObjectStoreConfig, StorageType
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore

from infra.names import Names

log = logging.getLogger(__name__)

OBJECT_NAME = "projections"
FETCH_BATCH = 64  # chunks of 128 KiB per pull
TIMEOUT_S = 10.0


class SnapshotUnreadable(Exception):
    pass


class _Parts(io.BufferedIOBase):
    """Parts read as one stream. ObjectStore.put calls `readinto` in a worker thread, a
    chunk at a time; the parts do not change meanwhile."""

    def __init__(self, parts: Sequence[bytes]) -> None:
        super().__init__()
        self._parts = [memoryview(part) for part in parts if part]
        self._at = 0  # the part being read
        self._offset = 0  # in it

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(target) and self._at < len(self._parts):
            part = self._parts[self._at]
            taken = min(len(target) - filled, len(part) - self._offset)
            target[filled:filled + taken] = part[self._offset:self._offset + taken]
            filled += taken
            self._offset += taken
            if self._offset == len(part):
                self._at, self._offset = self._at + 1, 0
        return filled


class SnapshotStore:
    """The latest snapshot only: each save replaces the one before (its chunks are purged)."""

    def __init__(self, js: JetStreamContext, names: Names, replicas: int = 1) -> None:
        self.js = js
        self.names = names
        self.replicas = replicas
        self._bucket: ObjectStore | None = None

    async def _store(self) -> ObjectStore:
        if self._bucket is None:
            try:
                self._bucket = await self.js.object_store(self.names.snapshots_bucket)
            except NotFoundError:
                self._bucket = await self.js.create_object_store(
                    self.names.snapshots_bucket,
                    ObjectStoreConfig(description="orchestrator projection snapshots",
                                      storage=StorageType.FILE, replicas=self.replicas))
        return self._bucket

    async def save(self, data: bytes | Sequence[bytes]) -> None:
        """Replace the snapshot with `data`, or with its parts one after the other: a
        ~100 MB document is sent in chunks as it is, never joined (that copy held the
        event loop for 60 ms)."""
        store = await self._store()
        await store.put(OBJECT_NAME, data if isinstance(data, bytes) else _Parts(data))

    async def load(self) -> bytes | None:
        """The latest snapshot, or None when there is none (or it cannot be read now)."""
        try:
            return await self._read()
        except NotFoundError:
            return None
        except (TimeoutError, nats.errors.Error, SnapshotUnreadable) as exc:
            log.warning("snapshot not readable, rebuilding from the log: %r", exc)
            return None

    async def _read(self) -> bytes:
        """The object's chunks by a pull consumer, checked against its digest.

        Not ObjectStore.get: it reads through a flow-controlled push consumer (about
        20 MB/s here) and joins the chunks by `bytes +=`, quadratic in their number.
        """
        store = await self._store()
        info = await store.get_info(OBJECT_NAME)
        if not info.nuid or not info.digest:
            raise SnapshotUnreadable("no chunks named in its metadata")
        bucket = self.names.snapshots_bucket
        subscription = await self.js.pull_subscribe(
            f"$O.{bucket}.C.{info.nuid}", stream=f"OBJ_{bucket}",
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, mem_storage=True,
                                  num_replicas=1, inactive_threshold=30.0))
        chunks: list[bytes] = []
        try:
            while len(chunks) < (info.chunks or 0):
                wanted = min(FETCH_BATCH, (info.chunks or 0) - len(chunks))
                chunks.extend(m.data for m in await subscription.fetch(wanted, TIMEOUT_S))
        finally:
            await subscription.unsubscribe()
        data = b"".join(chunks)
        expected = base64.urlsafe_b64decode(info.digest.split("=", 1)[1])
        if len(data) != info.size or hashlib.sha256(data).digest() != expected:
            raise SnapshotUnreadable("its chunks do not match its size and digest")
        return data
