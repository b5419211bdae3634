"""`orchestrator bench [scenario ...]`: run scenarios, print a table, write the JSON."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from bench.report import render, write
from bench.sizes import SIZES

SCENARIOS = ("heartbeats", "failover", "tasks", "commands", "rebuild", "api", "memory",
             "eventsourcing_peers", "auth", "history")


def add_bench_command(commands: Any) -> None:
    bench = commands.add_parser(
        "bench", help="run benchmarks: a table, and bench/results.json",
        description="Each scenario starts its own nats-server and orchestrator process and "
                    "measures a raw baseline in the same run.")
    bench.add_argument("scenarios", nargs="*", metavar="scenario",
                       help=f"scenarios to run (default: all): {', '.join(SCENARIOS)}")
    bench.add_argument("--size", choices=sorted(SIZES), default="full",
                       help="full (the targets' sizes), quick (minutes), tiny (smoke test)")
    bench.add_argument("--out", default="bench/results.json", help="where to write JSON")


async def run_bench(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    size = SIZES[args.size]
    results: dict[str, dict[str, Any]] = {}
    failed = False
    for name in args.scenarios or SCENARIOS:
        module = importlib.import_module(f"bench.scenarios.{name}")
        if sys.stderr.isatty():  # progress for a person; nothing in a pipe or a log
            print(f"running {name} ({size.name}) ...", file=sys.stderr, flush=True)
        try:
            results[name] = await module.run(size)
        except Exception as exc:
            traceback.print_exc()
            results[name] = {"error": repr(exc)}
            failed = True
    print(render(results))
    write(Path(args.out), results, size.name)
    return 1 if failed else 0
