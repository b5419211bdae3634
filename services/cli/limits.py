"""`orchestrator limits`: flow control's limits (docs/flow-control.md). `set` is an
operator's command over NATS (`<prefix>.admin.limits.set.<identity>`, recorded with who
asked); `list` reads them, with what each key uses now, from the read API."""

from __future__ import annotations

import argparse
from typing import Any

import orjson

from infra import names as n
from services.cli.auth import CommandFailed
from services.cli.common.connection import add_client_flags, send_command
from services.cli.read_api import ReadApi, add_api_flags

VALUE_FLAGS = ("concurrency", "rate", "burst", "weight", "max_unfinished")


def add_limits_command(commands: Any) -> None:
    limits = commands.add_parser(
        "limits", help="flow control: concurrency and rate limits of keys, fairness "
                       "weights, submitters' bounds")
    verbs = limits.add_subparsers(dest="limits_command", required=True)
    set_ = verbs.add_parser(
        "set", help="set a limit (no value given: lift it)",
        description="Set one limit. A concurrency key's: --concurrency, --rate (600/min, "
                    "10/s, 5000/hour) and --burst. --scope default NAME=key: the "
                    "concurrency of keys without their own. --scope fairness: --weight. "
                    "--scope submitter: --max-unfinished.")
    set_.add_argument("name", help="the key, fairness key or submitter ('key' for default)")
    set_.add_argument("--scope", choices=("key", "default", "fairness", "submitter"),
                      default="key", help="what the limit bounds (default: key)")
    set_.add_argument("--concurrency", type=int, help="tasks of the key assigned or running "
                                                      "at most")
    set_.add_argument("--rate", help="placements per time: 600/min, 10/s, 5000/hour")
    set_.add_argument("--burst", type=int, help="with --rate: placements at once (default 1)")
    set_.add_argument("--weight", type=float, help="a fairness key's share of turns")
    set_.add_argument("--max-unfinished", type=int, dest="max_unfinished",
                      help="a submitter's own bound of unfinished tasks (0: none)")
    add_client_flags(set_)
    set_.add_argument("--json", action="store_true", help="the reply, as JSON")
    listing = verbs.add_parser("list", help="every limit set, and what each key uses now")
    add_api_flags(listing)


async def run_limits(args: argparse.Namespace) -> int:
    if args.limits_command == "list":
        return await _list(args)
    body: dict[str, Any] = {"scope": args.scope, "name": args.name}
    body.update({flag: getattr(args, flag) for flag in VALUE_FLAGS
                 if getattr(args, flag) is not None})
    reply = await send_command(args, n.ADMIN_LIMITS_SET, body)
    if not reply.get("ok"):
        error = reply.get("error", {})
        raise CommandFailed(f"limit {args.scope} {args.name} was not set: "
                            f"{error.get('code')}: {error.get('message')}")
    if args.json:
        print(orjson.dumps(reply).decode())
        return 0
    values = reply.get("values") or {}
    shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in values.items()) or "none (lifted)"
    position = reply.get("position")
    print(f"limit {args.scope} {args.name}: {shown}" + (
        f" (position {position})" if position is not None else " (already: no change)"))
    return 0


async def _list(args: argparse.Namespace) -> int:
    async with ReadApi(args) as api:
        answer = await api.get("/v1/limits")
    assert answer is not None  # None only for a 404 asked to be missing_ok
    body = answer.body
    if args.json:
        print(orjson.dumps(body).decode())
        return 0
    rows = body["limits"]
    if not rows:
        print("no limits set")
    for row in rows:
        values = {k: v for k, v in row.items() if k not in ("scope", "name", "running",
                                                             "waiting")}
        use = (f"  running {row['running']}, waiting {row['waiting']}"
               if row["scope"] == "key" else "")
        shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in values.items())
        print(f"{row['scope']:<10} {row['name']:<24} {shown}{use}")
    admission = body["admission"]
    print(f"admission: {admission['unfinished_tasks']} unfinished; at most "
          f"{admission['max_unfinished_per_submitter'] or 'any number'} per submitter, "
          f"{admission['max_unfinished_tasks'] or 'any number'} in all")
    return 0
