"""`orchestrator agent`: the demo agent, with its own key, enrolled on first start.

On the orchestrator's machine the local operator's credentials are in the data
directory, so the demo agent makes its own seed there and asks for its enrollment
token itself: no extra step. Elsewhere, give it `--nkey-seed-file` and, the first
time, `--enrollment-token` from `orchestrator enroll`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

import orjson

from infra import names as n
from infra.auth.credentials import Keys, read_secret, write_secret
from infra.auth.keys import Role, new_seed
from infra.bus.tls import client_context
from sdk.agent import AgentClient, CommandError
from services.cli.common.connection import add_client_flags, connect_client
from services.cli.demo.commands import DEMO_HANDLERS


class AgentRefused(Exception):
    """The orchestrator refused the agent; the message says why and what to do."""


def add_agent_command(commands: argparse._SubParsersAction) -> None:
    agent = commands.add_parser(
        "agent", help="run a demo agent: registers, heartbeats, runs echo/sleep/fail tasks")
    agent.add_argument("agent_id", help="agent id, [A-Za-z0-9_-]{1,64}")
    agent.add_argument("--capability", action="append", default=[],
                       help="a capability; repeat for several")
    agent.add_argument("--capacity", type=int, default=1, help="tasks it runs at once")
    agent.add_argument("--label", action="append", default=[], help="key=value; repeatable")
    add_client_flags(agent, log_level="INFO")
    agent.add_argument("--nkey-seed-file", type=Path,
                       help="its own seed (default <data dir>/auth/agents/<id>.nk, made and "
                            "enrolled with the local operator's credentials when missing)")
    agent.add_argument("--enrollment-token", help="from `orchestrator enroll <id>`, first time")
    agent.add_argument("--replace", action="store_true",
                       help="take the id over from a live process holding it (else refused)")
    agent.add_argument("--keep-registration", action="store_true",
                       help="do not deregister on exit (the orchestrator will declare it dead)")


async def _own_key(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(seed, enrollment token) the agent connects with; (None, None) when there are no
    credentials to be had here (an orchestrator with ORCH_AUTH=off)."""
    if args.nkey_seed_file is not None:
        return read_secret(args.nkey_seed_file), args.enrollment_token
    keys = Keys.of(args.data_dir)
    seed_file = keys.agent(args.agent_id)
    if seed_file.exists():
        return read_secret(seed_file), args.enrollment_token
    if not keys.operator.exists() and args.credentials is None:
        return None, args.enrollment_token
    token = args.enrollment_token or await _enrollment_token(args)
    write_secret(seed_file, new_seed(Role.USER) + "\n")
    return read_secret(seed_file), token


async def _enrollment_token(args: argparse.Namespace) -> str:
    connected = await connect_client(args)
    try:
        msg = await connected.request(
            n.ADMIN_ENROLL, orjson.dumps({"agent_id": args.agent_id, "ttl_s": 300.0}),
            timeout=10)
    finally:
        await connected.nc.close()
    reply = orjson.loads(msg.data)
    if not reply.get("ok"):
        error = reply.get("error", {})
        raise AgentRefused(f"agent {args.agent_id} was not enrolled: {error.get('code')}: "
                           f"{error.get('message')}")
    token: str = reply["token"]
    return token


async def run_agent(args: argparse.Namespace) -> None:
    seed, token = await _own_key(args)
    labels = dict(label.split("=", 1) for label in args.label)
    agent = AgentClient(
        args.agent_id, capabilities=args.capability, capacity=args.capacity, labels=labels,
        nats_url=args.nats_url, prefix=args.subject_prefix, handlers=DEMO_HANDLERS,
        replace=args.replace, nkey_seed=seed, enrollment_token=token,
        tls=client_context(args.nats_tls_ca),
    )
    try:
        reply = await agent.start()
    except CommandError as refused:
        await agent.stop(deregister=False)
        hint = " (--replace does that here)" if refused.code == "conflict" else ""
        raise AgentRefused(
            f"agent {args.agent_id} was not registered: {refused}{hint}") from None
    except Exception as exc:
        if "uthorization" in str(exc):
            raise AgentRefused(
                f"agent {args.agent_id} was not let in: its key is not enrolled (or was "
                f"revoked); enroll it with `orchestrator enroll {args.agent_id}` and pass "
                f"--enrollment-token") from None
        raise
    print(f"agent {args.agent_id} registered incarnation={reply['incarnation']} "
          f"heartbeat every {reply['heartbeat_interval_s']}s", flush=True)
    try:
        # Until Ctrl-C or SIGTERM, or until the orchestrator deregisters it (logged).
        await agent.run_until_stopped(deregister=not args.keep_registration)
    finally:
        await agent.stop(deregister=not args.keep_registration)


async def until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
