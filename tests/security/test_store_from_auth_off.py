"""A store first run with auth off, started again with auth on: its earlier log sits in
NATS's global account, which auth does not see, and the start says so."""

from __future__ import annotations

import logging

from infra.bus.embedded import free_port
from infra.settings import Settings
from services.app import Orchestrator


async def test_a_log_written_with_auth_off_is_not_silently_left_behind(tmp_path, caplog):
    base = dict(data_dir=tmp_path / "data", http_port=0, nats_sync="default", lease_ttl=1.0)
    plain = Orchestrator(Settings(embedded_nats_port=free_port(), auth="off", **base))
    await plain.start()
    await plain.stop()
    caplog.set_level(logging.WARNING, logger="services.app")

    secure = Orchestrator(Settings(embedded_nats_port=free_port(), auth="on", **base))
    await secure.start()
    await secure.stop()

    warned = [r.getMessage() for r in caplog.records if "ORCH_AUTH=off" in r.getMessage()
              and "does not see" in r.getMessage()]
    assert len(warned) == 1 and str(tmp_path / "data" / "nats") in warned[0]
