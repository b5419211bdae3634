"""`orchestrator submit`: one task, as the identity of the CLI's credentials."""

from __future__ import annotations

import argparse

import orjson

from infra import names as n
from services.cli.connection import add_client_flags, connect_client


def add_submit_command(commands: argparse._SubParsersAction) -> None:
    submit = commands.add_parser("submit", help="submit a task and print the reply")
    submit.add_argument("kind", help="task kind; the demo agent runs echo, sleep and fail")
    submit.add_argument("--payload", default="null", help="JSON payload (default null)")
    submit.add_argument("--requires", action="append", default=[],
                        help="a capability the agent must have; repeatable")
    submit.add_argument("--priority", type=int, default=0, help="higher runs first")
    submit.add_argument("--task-id", default=None, help="idempotency key (default: new id)")
    submit.add_argument("--max-attempts", type=int, default=3, help="failures before dead letter")
    submit.add_argument("--timeout", type=float, default=300.0, help="seconds an attempt may run")
    add_client_flags(submit)


async def run_submit(args: argparse.Namespace) -> int:
    body: dict[str, object] = {
        "kind": args.kind, "payload": orjson.loads(args.payload), "requires": args.requires,
        "priority": args.priority, "max_attempts": args.max_attempts,
        "timeout_s": args.timeout,
    }
    if args.task_id:
        body["task_id"] = args.task_id
    connected = await connect_client(args)
    try:
        msg = await connected.nc.request(
            connected.names.client_command(n.TASK_SUBMIT, connected.identity),
            orjson.dumps(body), timeout=5)
    finally:
        await connected.nc.close()
    reply = orjson.loads(msg.data)
    print(orjson.dumps(reply).decode())
    return 0 if reply.get("ok") else 1
