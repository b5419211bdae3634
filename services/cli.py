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

from infra import settings as settings_module


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
    from sdk.agent import AgentClient

    _configure_logging(args.log_level)
    labels = dict(label.split("=", 1) for label in args.label)
    agent = AgentClient(
        args.agent_id, capabilities=args.capability, capacity=args.capacity, labels=labels,
        nats_url=args.nats_url, prefix=args.subject_prefix,
    )
    reply = await agent.start()
    print(f"agent {args.agent_id} registered incarnation={reply['incarnation']} "
          f"heartbeat every {reply['heartbeat_interval_s']}s", flush=True)
    try:
        await _until_signalled()
    finally:
        await agent.stop(deregister=not args.keep_registration)


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

    agent = commands.add_parser("agent", help="run a demo agent that registers and heartbeats")
    agent.add_argument("agent_id", help="agent id, [A-Za-z0-9_-]{1,64}")
    agent.add_argument("--capability", action="append", default=[],
                       help="a capability; repeat for several")
    agent.add_argument("--capacity", type=int, default=1, help="tasks it runs at once")
    agent.add_argument("--label", action="append", default=[], help="key=value; repeatable")
    agent.add_argument("--nats-url", default="nats://127.0.0.1:4222", help="NATS server URL")
    agent.add_argument("--subject-prefix", default="orch", help="the orchestrator's prefix")
    agent.add_argument("--keep-registration", action="store_true",
                       help="do not deregister on exit (the orchestrator will declare it dead)")
    agent.add_argument("--log-level", default="INFO")

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
        elif args.command == "schemas":
            _schemas(args)
    except KeyboardInterrupt:
        pass
    except ValueError as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
