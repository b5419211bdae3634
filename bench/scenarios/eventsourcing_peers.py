"""The eventsourcing library's own recorder performance tests, run on our JetStream
module and on the library's SQLite and PostgreSQL recorders in the same run."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import tempfile
import unittest
import uuid
from collections.abc import Callable
from typing import Any

import eventsourcing.tests.persistence as suites
from eventsourcing.persistence import ApplicationRecorder, InfrastructureFactory
from eventsourcing.utils import Environment

from bench.harness import nats_server
from bench.postgres import postgres_server, unavailable
from bench.sizes import Size

_INSERT = re.compile(r"([\d.]+) μs per insert")
_RATE = re.compile(r"Rate: (\d+) inserts per second")


async def run(size: Size) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with nats_server() as server:
        results.update(await asyncio.to_thread(measure, "jetstream", {
            "PERSISTENCE_MODULE": "infra.eventsourcing_jetstream", "ORCH_NATS_URL": server.url}))
    with tempfile.TemporaryDirectory(prefix="orch-bench-sqlite-") as folder:
        results.update(await asyncio.to_thread(measure, "sqlite", {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": f"{folder}/events.db"}))
    reason = unavailable()
    if reason is None:
        with postgres_server() as settings:
            results.update(await asyncio.to_thread(measure, "postgres", {
                "PERSISTENCE_MODULE": "eventsourcing.postgres", **settings}))
    else:
        results["postgres_skipped"] = reason
    if results.get("postgres_events_per_s"):
        results["jetstream_vs_postgres"] = (results["jetstream_events_per_s"]
                                            / results["postgres_events_per_s"])
    return results


def measure(peer: str, env: dict[str, str]) -> dict[str, float]:
    """μs per single insert and inserts per second, as the library's suite prints them."""
    factory = InfrastructureFactory.construct(Environment(f"bench{uuid.uuid4().hex[:8]}", env))
    try:
        output = run_suite_tests(factory.application_recorder)
    finally:
        factory.close()
    insert = _INSERT.search(output)
    rate = _RATE.search(output)
    if insert is None or rate is None:
        raise RuntimeError(f"{peer}: the suite printed no figures:\n{output}")
    return {f"{peer}_insert_us": float(insert.group(1)),
            f"{peer}_events_per_s": float(rate.group(1))}


def run_suite_tests(make_recorder: Callable[[], ApplicationRecorder]) -> str:
    class Peer(suites.ApplicationRecorderTestCase):
        def create_recorder(self) -> ApplicationRecorder:
            return make_recorder()

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for name in ("test_performance", "test_concurrent_throughput"):
            result = unittest.TestResult()
            Peer(name).run(result)
            if result.errors or result.failures:
                raise RuntimeError((result.errors + result.failures)[0][1])
    return printed.getvalue()
