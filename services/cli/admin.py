"""The write commands: `cancel`, `drain`, `undrain` and `deregister`, sent over NATS as
the CLI's identity (`<prefix>.task.cancel.<identity>`, `<prefix>.admin.agent.drain|undrain|
deregister.<identity>`), so that NATS holds it to its roles and the log records who asked."""

from __future__ import annotations

import argparse
from typing import Any

import orjson

from infra import names as n
from services.cli.auth import CommandFailed
from services.cli.common.connection import add_client_flags, send_command

WRITE_COMMANDS = ("cancel", "drain", "undrain", "deregister")
AGENT_COMMANDS = {"drain": n.ADMIN_DRAIN, "undrain": n.ADMIN_UNDRAIN,
                  "deregister": n.ADMIN_DEREGISTER}


def add_write_commands(commands: Any) -> None:
    cancel = commands.add_parser("cancel", help="cancel a task (its agent is told to stop)")
    cancel.add_argument("task_id")
    cancel.add_argument("--reason", default=None, help="recorded with the cancellation")
    add_client_flags(cancel)
    cancel.add_argument("--json", action="store_true", help="the reply, as JSON")

    drain = commands.add_parser(
        "drain", help="no new work for an agent; what it runs finishes")
    drain.add_argument("agent_id")
    add_client_flags(drain)
    drain.add_argument("--json", action="store_true", help="the reply, as JSON")

    undrain = commands.add_parser(
        "undrain", help="end a drain: the agent takes new work again")
    undrain.add_argument("agent_id")
    add_client_flags(undrain)
    undrain.add_argument("--json", action="store_true", help="the reply, as JSON")

    deregister = commands.add_parser(
        "deregister", help="take an agent out, as if it had deregistered; its tasks move")
    deregister.add_argument("agent_id")
    add_client_flags(deregister)
    deregister.add_argument("--json", action="store_true", help="the reply, as JSON")


async def run_write(args: argparse.Namespace) -> int:
    if args.command == "cancel":
        body: dict[str, Any] = {"task_id": args.task_id}
        if args.reason:
            body["reason"] = args.reason
        command, what = n.TASK_CANCEL, f"task {args.task_id}"
    else:
        body = {"agent_id": args.agent_id}
        command = AGENT_COMMANDS[args.command]
        what = f"agent {args.agent_id}"
    reply = await send_command(args, command, body)
    if not reply.get("ok"):
        error = reply.get("error", {})
        raise CommandFailed(f"{what} was not {_done(args.command)}: {error.get('code')}: "
                            f"{error.get('message')}")
    if args.json:
        print(orjson.dumps(reply).decode())
    else:
        position = reply.get("position")
        print(f"{what}: {reply.get('status')}" + (
            f" (position {position})" if position is not None else " (already: no change)"))
    return 0


def _done(command: str) -> str:
    return {"cancel": "cancelled", "drain": "drained", "undrain": "undrained",
            "deregister": "deregistered"}[command]
