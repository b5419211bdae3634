"""The `orchestrator` command line: run the service, run a demo agent, write schemas."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.cli import add_bench_command, run_bench
from infra import settings as settings_module
from infra.embedded import PortInUse
from services.audit.cli import AUDIT_COMMANDS, add_audit_commands, run_audit

EXIT_REFUSED = 1
EXIT_PORT_IN_USE = 3


class Refused(Exception):
    """The orchestrator refused what the command asked; the message says why."""


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _up(args: argparse.Namespace) -> None:
    from services.app import Orchestrator

    settings = settings_module.from_args(args)
    _configure_logging(settings.log_level)
    orchestrator = Orchestrator(settings)
    await orchestrator.start()
    print(f"orchestrator ready: http://{settings.http_host}:{orchestrator.http_port} "
          f"nats={orchestrator.nats_url} prefix={settings.subject_prefix}", flush=True)
    try:
        await _until_signalled()
    finally:
        await orchestrator.stop()


async def _agent(args: argparse.Namespace) -> None:
    from sdk.agent import AgentClient, CommandError
    from services.demo import DEMO_HANDLERS

    _configure_logging(args.log_level)
    labels = dict(label.split("=", 1) for label in args.label)
    agent = AgentClient(
        args.agent_id, capabilities=args.capability, capacity=args.capacity, labels=labels,
        nats_url=args.nats_url, prefix=args.subject_prefix, handlers=DEMO_HANDLERS,
        replace=args.replace,
    )
    try:
        reply = await agent.start()
    except CommandError as refused:
        await agent.stop(deregister=False)
        hint = " (--replace does that here)" if refused.code == "conflict" else ""
        raise Refused(f"agent {args.agent_id} was not registered: {refused}{hint}") from None
    print(f"agent {args.agent_id} registered incarnation={reply['incarnation']} "
          f"heartbeat every {reply['heartbeat_interval_s']}s", flush=True)
    try:
        await _until_signalled()
    finally:
        await agent.stop(deregister=not args.keep_registration)


async def _submit(args: argparse.Namespace) -> int:
    import nats
    import orjson

    body: dict[str, object] = {
        "kind": args.kind, "payload": orjson.loads(args.payload), "requires": args.requires,
        "priority": args.priority, "max_attempts": args.max_attempts,
        "timeout_s": args.timeout,
    }
    if args.task_id:
        body["task_id"] = args.task_id
    nc = await nats.connect(args.nats_url)
    try:
        msg = await nc.request(f"{args.subject_prefix}.task.submit", orjson.dumps(body),
                               timeout=5)
    finally:
        await nc.close()
    reply = orjson.loads(msg.data)
    print(orjson.dumps(reply).decode())
    return 0 if reply.get("ok") else 1


def _schemas(args: argparse.Namespace) -> None:
    from services.schemas import write_schemas

    for path in write_schemas(Path(args.out)):
        print(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description="Coordination service for fleets of agents, event-sourced on NATS JetStream.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser(
        "up", help="run the orchestrator (embedded nats-server unless --nats-url is set)",
        description="Run the orchestrator. Each flag falls back to its environment variable.",
    )
    settings_module.add_flags(up)

    agent = commands.add_parser(
        "agent", help="run a demo agent: registers, heartbeats, runs echo/sleep/fail tasks")
    agent.add_argument("agent_id", help="agent id, [A-Za-z0-9_-]{1,64}")
    agent.add_argument("--capability", action="append", default=[],
                       help="a capability; repeat for several")
    agent.add_argument("--capacity", type=int, default=1, help="tasks it runs at once")
    agent.add_argument("--label", action="append", default=[], help="key=value; repeatable")
    agent.add_argument("--nats-url", default="nats://127.0.0.1:4222", help="NATS server URL")
    agent.add_argument("--subject-prefix", default="orch", help="the orchestrator's prefix")
    agent.add_argument("--replace", action="store_true",
                       help="take the id over from a live process holding it (else refused)")
    agent.add_argument("--keep-registration", action="store_true",
                       help="do not deregister on exit (the orchestrator will declare it dead)")
    agent.add_argument("--log-level", default="INFO")

    submit = commands.add_parser("submit", help="submit a task and print the reply")
    submit.add_argument("kind", help="task kind; the demo agent runs echo, sleep and fail")
    submit.add_argument("--payload", default="null", help="JSON payload (default null)")
    submit.add_argument("--requires", action="append", default=[],
                        help="a capability the agent must have; repeatable")
    submit.add_argument("--priority", type=int, default=0, help="higher runs first")
    submit.add_argument("--task-id", default=None, help="idempotency key (default: new id)")
    submit.add_argument("--max-attempts", type=int, default=3, help="failures before dead letter")
    submit.add_argument("--timeout", type=float, default=300.0, help="seconds an attempt may run")
    submit.add_argument("--nats-url", default="nats://127.0.0.1:4222", help="NATS server URL")
    submit.add_argument("--subject-prefix", default="orch", help="the orchestrator's prefix")

    add_audit_commands(commands)
    add_bench_command(commands)

    schemas = commands.add_parser("schemas", help="write the protocol's JSON Schemas")
    schemas.add_argument("--out", default="docs/schemas", help="output directory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "up":
            asyncio.run(_up(args))
        elif args.command == "agent":
            asyncio.run(_agent(args))
        elif args.command == "submit":
            return asyncio.run(_submit(args))
        elif args.command == "bench":
            return asyncio.run(run_bench(args))
        elif args.command in AUDIT_COMMANDS:
            return asyncio.run(run_audit(args))
        elif args.command == "schemas":
            _schemas(args)
    except KeyboardInterrupt:
        pass
    except Refused as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except PortInUse as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return EXIT_PORT_IN_USE
    except ValueError as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
