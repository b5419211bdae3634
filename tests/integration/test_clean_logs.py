"""A clean start and stop says so and warns of nothing (issue 33, item 7): with auth on
and the embedded server, as `make run` starts it."""

from __future__ import annotations

import logging

import pytest

from infra.bus.embedded import free_port
from infra.settings import Settings
from services.app import Orchestrator
from tests.support import eventually


async def test_a_clean_start_and_stop_warn_of_nothing_and_say_they_stopped(
        tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    orch = Orchestrator(Settings(data_dir=tmp_path / "data", embedded_nats_port=free_port(),
                                 http_port=0, lease_ttl=1.0))
    await orch.start()
    try:
        await eventually(lambda: orch.is_leader, what="the lease taken")
    finally:
        await orch.stop()
    loud = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records
            if r.levelno >= logging.WARNING]
    assert loud == []
    said = [r.getMessage() for r in caplog.records if r.name == "services.app"]
    assert said[-1].startswith("orchestrator stopped holder=")
    assert sum(m.startswith("orchestrator up ") for m in said) == 1
