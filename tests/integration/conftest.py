"""Fixtures several integration tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.processes import OrchestratorProcess


@pytest.fixture
def orchestrators(nats_server, prefix, tmp_path) -> Iterator[list[OrchestratorProcess]]:
    """Two `orchestrator up` processes on the test's server and prefix, stopped after."""
    procs = [OrchestratorProcess(nats_server.url, prefix, tmp_path / f"orch{i}.log")
             for i in range(2)]
    yield procs
    for proc in procs:
        proc.stop()
