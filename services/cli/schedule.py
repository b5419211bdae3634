"""`orchestrator schedule create|list|pause|resume|delete`: a submitter's recurring tasks
(docs/scheduling.md), over NATS as the client's identity
(`<prefix>.schedule.<verb>.<identity>`)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import orjson

from infra import names as n
from services.cli.auth import CommandFailed
from services.cli.common.connection import add_client_flags, send_command

VERBS = {"pause": n.SCHEDULE_PAUSE, "resume": n.SCHEDULE_RESUME, "delete": n.SCHEDULE_DELETE}


def add_schedule_command(commands: Any) -> None:
    schedule = commands.add_parser(
        "schedule", help="recurring tasks: a task submitted at each slot of a cron "
                         "expression (UTC) or an interval")
    verbs = schedule.add_subparsers(dest="schedule_command", required=True)
    create = verbs.add_parser(
        "create", help="create a schedule (--replace: change an existing one)",
        description="Create a schedule. Each due slot submits one task, with the id "
                    "NAME-<slot epoch second>, as this identity's.")
    create.add_argument("name", help="1 to 48 of A-Z a-z 0-9 _ -")
    timing = create.add_mutually_exclusive_group(required=True)
    timing.add_argument("--cron", help="five fields, UTC: '*/5 * * * *', '0 3 * * mon-fri', "
                                       "or @hourly, @daily, @weekly, @monthly, @yearly")
    timing.add_argument("--every", type=int, metavar="SECONDS", dest="every_s",
                        help="every this many seconds (slots on multiples since the epoch)")
    create.add_argument("--kind", required=True, help="the task kind")
    create.add_argument("--payload", default="null", help="JSON payload (default null)")
    create.add_argument("--requires", action="append", default=[], metavar="CAPABILITY",
                        help="a capability the task needs (repeatable)")
    create.add_argument("--priority", type=int, default=0)
    create.add_argument("--max-attempts", type=int, default=3, dest="max_attempts")
    create.add_argument("--timeout", type=float, default=300.0, dest="timeout_s",
                        metavar="SECONDS", help="each attempt's timeout (default 300)")
    create.add_argument("--concurrency-key", dest="concurrency_key",
                        help="flow control: at most the key's limit of such tasks at once")
    create.add_argument("--fairness-key", dest="fairness_key",
                        help="flow control: the turn it waits in (default its submitter)")
    create.add_argument("--overlap", choices=("skip", "allow"), default="skip",
                        help="a slot that finds the last task unfinished: skip it "
                             "(default) or submit beside it")
    create.add_argument("--catch-up", choices=("once", "skip"), default="once",
                        dest="catch_up", help="slots missed with no leader: fire the latest "
                                              "once (default), or skip it if later than "
                                              "--grace")
    create.add_argument("--grace", type=float, default=60.0, dest="grace_s",
                        metavar="SECONDS", help="with --catch-up skip: lateness allowed")
    create.add_argument("--replace", action="store_true",
                        help="replace the definition of an existing schedule")
    parsers = [create, verbs.add_parser(
        "list", help="this identity's schedules (an operator's: everyone's), next runs")]
    for verb in VERBS:
        parser = verbs.add_parser(verb, help=f"{verb} a schedule")
        parser.add_argument("name")
        parsers.append(parser)
    for parser in parsers:
        add_client_flags(parser)
        parser.add_argument("--json", action="store_true", help="the reply, as JSON")


async def run_schedule(args: argparse.Namespace) -> int:
    if args.schedule_command == "create":
        command, body = n.SCHEDULE_CREATE, _definition(args)
    elif args.schedule_command == "list":
        command, body = n.SCHEDULE_LIST, {"limit": 1000}
    else:
        command, body = VERBS[args.schedule_command], {"name": args.name}
    reply = await send_command(args, command, body)
    if not reply.get("ok"):
        error = reply.get("error", {})
        what = f"schedule {body['name']}" if "name" in body else "schedules"
        details = "; ".join(f"{d.get('field')}: {d.get('problem')}"
                            for d in error.get("details") or [])
        raise CommandFailed(f"{what}: {error.get('code')}: {error.get('message')}"
                            + (f" ({details})" if details else ""))
    if args.json:
        print(orjson.dumps(reply).decode())
    elif command == n.SCHEDULE_LIST:
        if not reply["schedules"]:
            print("no schedules")
        for schedule in reply["schedules"]:
            print(_line(schedule))
    else:
        position = reply.get("position")
        print(_line(reply["schedule"]) + (
            f" (position {position})" if position is not None else " (no change)"))
    return 0


def _definition(args: argparse.Namespace) -> dict[str, Any]:
    try:
        payload = orjson.loads(args.payload)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"--payload is not JSON: {exc}") from None
    body: dict[str, Any] = {
        "name": args.name, "task": {
            "kind": args.kind, "payload": payload, "requires": args.requires,
            "priority": args.priority, "max_attempts": args.max_attempts,
            "timeout_s": args.timeout_s,
            **{key: getattr(args, key) for key in ("concurrency_key", "fairness_key")
               if getattr(args, key) is not None}},
        "overlap": args.overlap, "catch_up": args.catch_up, "grace_s": args.grace_s,
        "replace": args.replace}
    if args.cron is not None:
        body["cron"] = args.cron
    else:
        body["every_s"] = args.every_s
    return body


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _line(schedule: dict[str, Any]) -> str:
    timing = (f"cron '{schedule['cron']}'" if schedule.get("cron")
              else f"every {schedule.get('every_s')}s")
    return (f"{schedule['name']:<24} {schedule['status']:<8} {timing:<22} "
            f"kind {schedule['task']['kind']:<16} next {_when(schedule.get('next_due'))}  "
            f"last {schedule.get('last_task_id') or '-'}  fired {schedule.get('fired', 0)}  "
            f"owner {schedule['owner']}")
