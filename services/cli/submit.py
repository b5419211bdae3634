"""`orchestrator submit`: one task, as the identity of the CLI's credentials."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from datetime import datetime
from typing import Any

import orjson

from infra import names as n
from sdk.agent import CommandError
from sdk.client import Client
from services.cli.auth import CommandFailed
from services.cli.common.connection import add_client_flags, connect_client


def add_submit_command(commands: argparse._SubParsersAction) -> None:
    submit = commands.add_parser(
        "submit", help="submit a task and print the reply (JSON); a refusal is one line on "
                       "stderr, exit 1")
    submit.add_argument("kind", help="task kind; the demo agent runs echo, sleep and fail")
    submit.add_argument("--payload", default="null", help="JSON payload (default null)")
    submit.add_argument("--requires", action="append", default=[],
                        help="a capability the agent must have; repeatable")
    submit.add_argument("--priority", type=int, default=0, help="higher runs first")
    submit.add_argument("--task-id", default=None, help="idempotency key (default: new id)")
    submit.add_argument("--max-attempts", type=int, default=3, help="failures before dead letter")
    submit.add_argument("--timeout", type=float, default=300.0, help="seconds an attempt may run")
    when = submit.add_mutually_exclusive_group()
    when.add_argument("--delay", type=float, default=None, metavar="SECONDS",
                      help="run it this many seconds from now (it waits as scheduled)")
    when.add_argument("--not-before", type=_moment, default=None, metavar="TIME",
                      help="run it at this time: ISO 8601 with a UTC offset "
                           "(2026-12-24T18:00:00+01:00), or epoch seconds")
    submit.add_argument("--concurrency-key", default=None, metavar="KEY",
                        help="the key whose limits bound it (orchestrator limits)")
    submit.add_argument("--fairness-key", default=None, metavar="KEY",
                        help="tasks of one priority are served in turn across these "
                             "(default: the submitter)")
    submit.add_argument("--selector", action="append", default=[], type=_label,
                        metavar="LABEL=VALUE",
                        help="a label the agent must have; repeatable")
    submit.add_argument("--prefer", action="append", default=[], type=_label,
                        metavar="LABEL=VALUE",
                        help="a label that ranks agents having it first; repeatable")
    submit.add_argument("--overload-wait", type=float, default=60.0, metavar="SECONDS",
                        help="refused as overloaded, submit again as told for at most this "
                             "long (default 60)")
    submit.add_argument("--wait", action="store_true",
                        help="wait for the task to finish and print its outcome; exit 1 "
                             "unless it completed")
    submit.add_argument("--wait-timeout", type=float, default=None, metavar="SECONDS",
                        help="with --wait, give up waiting after this long (exit 1; the "
                             "task goes on)")
    add_client_flags(submit)


async def run_submit(args: argparse.Namespace) -> int:
    try:
        payload = orjson.loads(args.payload)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"--payload is not JSON: {exc}") from None
    body: dict[str, object] = {
        "kind": args.kind, "payload": payload, "requires": args.requires,
        "priority": args.priority, "max_attempts": args.max_attempts,
        "timeout_s": args.timeout,
    }
    if args.task_id:
        body["task_id"] = args.task_id
    if args.delay is not None:
        body["delay_s"] = args.delay
    if args.not_before is not None:
        body["not_before"] = args.not_before
    if args.concurrency_key is not None:
        body["concurrency_key"] = args.concurrency_key
    if args.fairness_key is not None:
        body["fairness_key"] = args.fairness_key
    if args.selector:
        body["selector"] = dict(args.selector)
    if args.prefer:
        body["prefer"] = dict(args.prefer)
    if args.wait:
        return await _submit_and_wait(args, body)
    connected = await connect_client(args)
    try:
        reply = await _admitted(connected, body, args.overload_wait)
    finally:
        await connected.nc.close()
    if not reply.get("ok"):
        error = reply.get("error") or {}
        raise CommandFailed(f"{error.get('code', 'refused')}: {error.get('message', '')}")
    print(orjson.dumps(reply).decode())
    if reply.get("warning"):
        print(f"warning: {reply['warning']}", file=sys.stderr)
    return 0


async def _admitted(connected: Any, body: dict[str, Any], patience: float) -> dict[str, Any]:
    """The submit's reply; refused as overloaded, submitted again as the reply says, for
    at most `patience` seconds (the last refusal is the reply then)."""
    deadline = time.monotonic() + patience
    while True:
        msg = await connected.request(n.TASK_SUBMIT, orjson.dumps(body), timeout=5)
        reply: dict[str, Any] = orjson.loads(msg.data)
        error = reply.get("error") or {}
        if reply.get("ok") or error.get("code") != "overloaded":
            return reply
        wait = float(error.get("retry_after_s") or 1.0)
        if time.monotonic() + wait > deadline:
            return reply
        print(f"overloaded: {error.get('message')}; submitting again in {wait:g}s",
              file=sys.stderr)
        await asyncio.sleep(wait)


def _label(text: str) -> tuple[str, str]:
    label, sep, value = text.partition("=")
    if not sep or not label:
        raise argparse.ArgumentTypeError(f"not LABEL=VALUE: {text!r}")
    return label, value


def _moment(text: str) -> float:
    """Epoch seconds of `--not-before`: a number, or an ISO 8601 time with its offset
    (a time without one is refused: whose clock it means would be a guess)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset: add one (+00:00, Z) so the time is unambiguous")
    return moment.timestamp()


async def _submit_and_wait(args: argparse.Namespace, body: dict[str, Any]) -> int:
    """Submit through the client SDK, which takes the outcome from the identity's inbox
    (pushed when the task finishes: nothing polls)."""
    connected = await connect_client(args)
    try:
        client = Client(connected.nc, connected.identity, connected.names.prefix)
        client.overload_patience_s = args.overload_wait
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
