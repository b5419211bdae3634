"""`orchestrator submit`: one task, as the identity of the CLI's credentials."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import orjson

from infra import names as n
from sdk.agent import CommandError
from sdk.client import Client
from services.cli.auth import CommandFailed
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
    submit.add_argument("--wait", action="store_true",
                        help="wait for the task to finish and print its outcome; exit 1 "
                             "unless it completed")
    submit.add_argument("--wait-timeout", type=float, default=None, metavar="SECONDS",
                        help="with --wait, give up waiting after this long (exit 1; the "
                             "task goes on)")
    add_client_flags(submit)


async def run_submit(args: argparse.Namespace) -> int:
    body: dict[str, object] = {
        "kind": args.kind, "payload": orjson.loads(args.payload), "requires": args.requires,
        "priority": args.priority, "max_attempts": args.max_attempts,
        "timeout_s": args.timeout,
    }
    if args.task_id:
        body["task_id"] = args.task_id
    if args.wait:
        return await _submit_and_wait(args, body)
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


async def _submit_and_wait(args: argparse.Namespace, body: dict[str, Any]) -> int:
    """Submit through the client SDK, which takes the outcome from the identity's inbox
    (pushed when the task finishes: nothing polls)."""
    connected = await connect_client(args)
    try:
        client = Client(connected.nc, connected.identity, connected.names.prefix)
        await client.listen()
        try:
            handle = await client.submit(**body)
        except CommandError as refused:
            raise CommandFailed(f"{refused.code}: {refused.message}") from None
        try:
            outcome = await handle.outcome(args.wait_timeout)
        except TimeoutError:
            raise CommandFailed(f"task {handle.task_id} not finished within "
                                f"{args.wait_timeout} s; it goes on (orchestrator "
                                f"task-status {handle.task_id})") from None
    finally:
        await connected.nc.close()
    print(orjson.dumps(dataclasses.asdict(outcome)).decode())
    if outcome.status != "completed":
        raise CommandFailed(f"task {outcome.task_id} {outcome.status}: {outcome.error}")
    return 0
