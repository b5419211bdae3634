"""`orchestrator what-if limits`: a recorded window replayed under other limits
(services/audit/what_if_limits.py), printed per concurrency key beside what happened."""

from __future__ import annotations

import argparse
from typing import Any

import orjson

from domain.tasks.placement import Strategy
from infra.log.event_store import EventStore
from services.audit.what_if_limits import parse_change, what_if_limits

COLUMNS = ("key", "", "submitted", "placed", "finished", "p50_wait_s", "p99_wait_s",
           "longest_wait_s", "throughput_per_s")


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="limit_changes", action="append", type=limit_change,
                        default=[], metavar="KEY:NAME=VALUE,...",
                        help="with `limits`: a key's limits in the replay, over those "
                             "recorded (repeatable): gpu:concurrency=4,rate=600/min,burst=5; "
                             "fairness:team-a:weight=3")
    parser.add_argument("--from-position", type=int, default=1,
                        help="with `limits`: the window's first log position (default 1)")
    parser.add_argument("--to-position", type=int, default=None,
                        help="with `limits`: its last (default: the log's last)")
    parser.add_argument("--strategy", choices=[s.value for s in Strategy],
                        default=Strategy.LEAST_LOADED.value,
                        help="with `limits`: the placement strategy of the replay")


def limit_change(text: str) -> tuple[str, dict[str, Any]]:
    try:
        return parse_change(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


async def run_limits_what_if(args: argparse.Namespace, store: EventStore) -> int:
    found = await what_if_limits(store, args.from_position, args.to_position,
                                 args.limit_changes, Strategy(args.strategy))
    if args.json:
        print(orjson.dumps(found).decode())
        return 0
    window = found["window"]
    print(f"window: positions {window['from_position']}..{window['to_position']} "
          f"({window['seconds']} s)")
    for change in found["changes"]:
        print(f"replayed with {change['limit']}: {change['values']}")
    print("  ".join(f"{c:>14}" for c in COLUMNS))
    for key, sides in found["keys"].items():
        for side in ("actual", "what_if"):
            row = sides[side]
            print("  ".join(f"{v!s:>14}" for v in (
                key, side, row["submitted"], row["placed"], row["finished"],
                row["p50_wait_s"], row["p99_wait_s"], row["longest_wait_s"],
                row["throughput_per_s"])))
    placements = found["placements"]
    print(f"placements: {len(placements['what_if'])} in the replay, "
          f"{len(placements['actual'])} recorded; "
          + ("the same, in the same order" if placements["same"] else "they differ"))
    return 0
