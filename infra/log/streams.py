"""Idempotent provisioning of the orchestrator's streams."""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StoreCompression, StreamConfig
from nats.js.errors import BadRequestError

from infra.names import Names

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_S = 120.0
HEARTBEAT_MAX_AGE_S = 24 * 3600.0
# Memory the heartbeat stream may hold: the last beats of ~100,000 agents, and more.
HEARTBEAT_MAX_BYTES = 64 * 1024 * 1024
MAX_EVENT_BYTES = 256 * 1024
# How long the liveness record (what-if's history) is kept.
LIVENESS_MAX_AGE_S = 7 * 24 * 3600.0
# A ceiling on its disk, far above what a large fleet's silences take in that time.
LIVENESS_MAX_BYTES = 1024 * 1024 * 1024
# A heartbeat lists at most 1,000 running task ids of 64 characters.
MAX_HEARTBEAT_BYTES = 128 * 1024


def events_config(names: Names, replicas: int = 1, max_age: float = 0.0) -> StreamConfig:
    """The log of decisions: file storage, never edited; kept forever, or `max_age`
    seconds when bounded (services/leader/log_keeper.py carries forward what is still
    needed before the server cuts it)."""
    return StreamConfig(
        name=names.events_stream,
        description="orchestrator decisions; the source of truth",
        subjects=[names.events_wildcard],
        storage=StorageType.FILE,
        num_replicas=replicas,
        # The server wants the window within the age bound (it is a bound's lower end).
        duplicate_window=min(DUPLICATE_WINDOW_S, max_age) if max_age else DUPLICATE_WINDOW_S,
        max_msg_size=MAX_EVENT_BYTES,
        allow_direct=True,
        allow_atomic=True,  # group commit writes concurrent appends as one batch
        deny_delete=True,
        deny_purge=True,
        max_age=max_age,
        discard=DiscardPolicy.OLD,
        # Sealed blocks are compressed (S2): events repeat their header names and field
        # names, and the log keeps about a quarter of its bytes on disk (docs/performance.md).
        compression=StoreCompression.S2,
    )


def heartbeats_config(names: Names, history: int, replicas: int = 1) -> StreamConfig:
    """Heartbeats, bounded per agent and in age.

    Memory storage: a heartbeat is stale within seconds, and after a NATS restart the
    health monitor restarts every deadline anyway; file storage under `sync_interval:
    always` would fsync each one.
    """
    return StreamConfig(
        name=names.heartbeats_stream,
        description="agent heartbeats, the last few per agent",
        subjects=[names.heartbeats_wildcard],
        storage=StorageType.MEMORY,
        num_replicas=replicas,
        max_msgs_per_subject=history,
        max_age=HEARTBEAT_MAX_AGE_S,
        max_bytes=HEARTBEAT_MAX_BYTES,
        max_msg_size=MAX_HEARTBEAT_BYTES,
        discard=DiscardPolicy.OLD,
        allow_direct=True,
    )


def liveness_config(names: Names, replicas: int = 1,
                    max_age: float = LIVENESS_MAX_AGE_S) -> StreamConfig:
    """The liveness record what-if replays: silences and watch marks, on file, for
    `max_age`. Each watch keeps its latest mark only (a rollup per subject)."""
    return StreamConfig(
        name=names.liveness_stream,
        description="silences the health monitor saw, and when it watched; for what-if",
        subjects=[names.liveness_wildcard],
        storage=StorageType.FILE,
        num_replicas=replicas,
        max_age=max_age,
        max_bytes=LIVENESS_MAX_BYTES,
        discard=DiscardPolicy.OLD,
        allow_rollup_hdrs=True,
        allow_direct=True,
    )


async def provision(
    js: JetStreamContext, names: Names, heartbeat_history: int, replicas: int = 1,
    log_max_age: float = 0.0,
) -> None:
    """Create the streams, or bring an existing one's settings up to date."""
    for config in (
        events_config(names, replicas, log_max_age),
        heartbeats_config(names, heartbeat_history, replicas),
        liveness_config(names, replicas),
    ):
        try:
            await js.add_stream(config)
        except BadRequestError as exc:
            # 10058: the stream exists with other settings; editable ones are updated.
            if exc.err_code != 10058:
                raise
            await js.update_stream(config)
            log.info("stream updated name=%s", config.name)
