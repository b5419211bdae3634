"""`python -m bench [scenario ...]`: run scenarios, print a table, write the JSON.

The benchmarks are a development tool, not part of the product: they run from a clone
(the `orchestrator` wheel does not ship them), as `make bench` and `make bench-quick` do."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import MissingTool
from bench.report import render, write
from bench.sizes import SIZES

SCENARIOS = ("heartbeats", "failover", "tasks", "commands", "rebuild", "api", "memory",
             "eventsourcing_peers", "auth", "history", "export", "client", "flow", "ha")
# Run by default too, but not smoke-tested at the tiny size as SCENARIOS are
# (tests/integration/test_bench_smoke.py): sdk_ts needs the TypeScript SDK compiled
# (`make sdk-ts`), which `make test` installs but does not compile before that test.
NODE_SCENARIOS = ("sdk_ts",)


def build_parser() -> argparse.ArgumentParser:
    bench = argparse.ArgumentParser(
        prog="python -m bench", description="Run benchmarks: a table, and bench/results.json. "
        "Each scenario starts its own nats-server and orchestrator process and measures a raw "
        "baseline in the same run.")
    bench.add_argument("scenarios", nargs="*", metavar="scenario",
                       help="scenarios to run (default: all): "
                       f"{', '.join(SCENARIOS + NODE_SCENARIOS)}")
    bench.add_argument("--size", choices=sorted(SIZES), default="full",
                       help="full (the targets' sizes), quick (minutes), tiny (smoke test)")
    bench.add_argument("--out", default="bench/results.json", help="where to write JSON")
    return bench


async def run_bench(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    size = SIZES[args.size]
    results: dict[str, dict[str, Any]] = {}
    failed = False
    for name in args.scenarios or SCENARIOS + NODE_SCENARIOS:
        module = importlib.import_module(f"bench.scenarios.{name}")
        if sys.stderr.isatty():  # progress for a person; nothing in a pipe or a log
            print(f"running {name} ({size.name}) ...", file=sys.stderr, flush=True)
        try:
            results[name] = await module.run(size)
        except MissingTool as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            results[name] = {"error": str(exc)}
            failed = True
        except Exception as exc:
            traceback.print_exc()
            results[name] = {"error": repr(exc)}
            failed = True
    print(render(results))
    write(Path(args.out), results, size.name)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    unknown = [name for name in args.scenarios if not name.isidentifier()
               or importlib.util.find_spec(f"bench.scenarios.{name}") is None]
    if unknown:
        parser.error(f"no scenario {', '.join(unknown)} (bench/scenarios/)")
    try:
        return asyncio.run(run_bench(args))
    except KeyboardInterrupt:
        return 0
