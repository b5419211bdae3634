"""Fuzz fixtures: a quiet world on the per-test orchestrator, and the payload count."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client

from infra.names import Names
from services.app import Orchestrator
from tests.fuzz.checks import BACKGROUND_SEEN, CATEGORIES, HTTP_STATUSES, SENT
from tests.fuzz.world import World, build_world


@pytest.fixture
async def world(orchestrator: Orchestrator, nc: Client, names: Names) -> AsyncIterator[World]:
    built = await build_world(orchestrator, nc, names)
    yield built
    await built.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not SENT and not HTTP_STATUSES:
        return
    terminalreporter.section("fuzz")
    if SENT:
        terminalreporter.write_line(
            f"{sum(SENT.values())} generated payloads sent to {len(SENT)} command endpoints")
        for command, count in sorted(SENT.items()):
            terminalreporter.write_line(f"  {command:<24} {count}")
        terminalreporter.write_line(f"by kind: {dict(sorted(CATEGORIES.items()))}")
    if HTTP_STATUSES:
        terminalreporter.write_line(
            f"{sum(HTTP_STATUSES.values())} schemathesis requests to the read API, by status: "
            f"{dict(sorted(HTTP_STATUSES.items()))}")
    if BACKGROUND_SEEN:
        terminalreporter.write_line(
            f"background events tolerated meanwhile: {dict(BACKGROUND_SEEN)}")
