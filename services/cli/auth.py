"""The CLI's security commands: enroll and revoke agents, identities for people and
tools, read API tokens, and the nats-server configuration for an external NATS."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson

from infra import names as n
from infra.auth.credentials import write_secret
from infra.auth.keys import Role, new_seed, public_key
from services.cli.auth_keys import add_auth_commands, run_auth
from services.cli.common.connection import add_client_flags, connect_client

SECURITY_COMMANDS = ("enroll", "revoke", "identity", "token", "auth")


class CommandFailed(Exception):
    """The orchestrator refused; the message is its code and reason."""


def add_security_commands(commands: Any) -> None:
    enroll = commands.add_parser(
        "enroll", help="a one-time enrollment token for an agent id (prints it once), "
                       "and what the agent may claim")
    add_client_flags(enroll)
    enroll.add_argument("agent_id")
    enroll.add_argument("--ttl", type=float, default=3600.0,
                        help="seconds the token stays usable (default 3600)")
    enroll.add_argument("--role", action="append", default=[],
                        choices=["submitter", "reader", "auditor", "operator"],
                        help="a role besides agent; repeatable")
    enroll.add_argument("--rotate", action="store_true",
                        help="replace the key of an agent enrolled already")
    # The policy: what the agent may claim when it registers or declares services. A
    # flag not given leaves that claim unbounded; no flag at all, no policy.
    enroll.add_argument("--service", action="append", default=None, metavar="NAME",
                        help="a service it may offer; repeatable (given: no other service)")
    enroll.add_argument("--capability", action="append", default=None, metavar="C",
                        help="a capability it may claim; repeatable (given: no other one)")
    enroll.add_argument("--label", action="append", default=None, metavar="K=V",
                        help="a label it may claim; repeatable, also for several values of "
                             "one key (given: no other label)")
    enroll.add_argument("--max-capacity", type=int, default=None, metavar="N",
                        help="the largest capacity it may register with")
    enroll.add_argument("--json", action="store_true")

    revoke = commands.add_parser(
        "revoke", help="cut an identity off: its commands refused and its agent "
                       "deregistered at once (its tasks move), no new connection, its "
                       "current one ends within ORCH_AUTH_JWT_TTL")
    add_client_flags(revoke)
    revoke.add_argument("name", help="agent id or identity name")
    revoke.add_argument("--reason", default="revoked by an operator")
    revoke.add_argument("--json", action="store_true")

    identity = commands.add_parser("identity", help="identities of people and tools")
    identity_commands = identity.add_subparsers(dest="identity_command", required=True)
    create = identity_commands.add_parser(
        "create", help="make a key here (its seed never leaves this file) and register it")
    add_client_flags(create)
    create.add_argument("name")
    create.add_argument("--role", action="append", required=True,
                        choices=["submitter", "reader", "auditor", "operator", "agent"])
    create.add_argument("--seed-file", type=Path, required=True,
                        help="where to write the new seed (mode 0600; must not exist)")
    create.add_argument("--json", action="store_true")

    token = commands.add_parser("token", help="read API bearer tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    token_create = token_commands.add_parser("create", help="a bearer token (printed once)")
    add_client_flags(token_create)
    token_create.add_argument("--scope", choices=["read", "admin"], required=True)
    token_create.add_argument("--name", default="",
                              help="the identity holding it (default: the one you connect as)")
    token_create.add_argument("--json", action="store_true")

    add_auth_commands(commands)


async def run_security(args: argparse.Namespace) -> int:
    if args.command == "auth":
        return run_auth(args)
    if args.command == "identity":
        return await _identity_create(args)
    connected = await connect_client(args)
    try:
        if args.command == "enroll":
            body: dict[str, Any] = {"agent_id": args.agent_id, "ttl_s": args.ttl,
                                    "roles": args.role, "rotate": args.rotate}
            policy = _policy(args)
            if policy is not None:
                body["policy"] = policy
            reply = await _send(connected, n.ADMIN_ENROLL, body)
            _print(args, reply, reply["token"])
        elif args.command == "revoke":
            reply = await _send(connected, n.ADMIN_REVOKE,
                                {"name": args.name, "reason": args.reason})
            _print(args, reply, f"revoked {args.name}")
        else:
            reply = await _send(connected, n.ADMIN_TOKEN_CREATE,
                                {"name": args.name or connected.identity, "scope": args.scope})
            _print(args, reply, reply["token"])
    finally:
        await connected.nc.close()
    return 0


def _policy(args: argparse.Namespace) -> dict[str, Any] | None:
    """The enrollment policy the flags state; None when no policy flag is given."""
    labels: dict[str, list[str]] | None = None
    if args.label is not None:
        labels = {}
        for pair in args.label:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise CommandFailed(f"--label {pair!r}: expected KEY=VALUE")
            labels.setdefault(key, []).append(value)
    policy = {"services": args.service, "capabilities": args.capability, "labels": labels,
              "max_capacity": args.max_capacity}
    if all(part is None for part in policy.values()):
        return None
    return {part: value for part, value in policy.items() if value is not None}


async def _identity_create(args: argparse.Namespace) -> int:
    if args.seed_file.exists():
        raise CommandFailed(f"{args.seed_file} exists; choose another --seed-file")
    seed = new_seed(Role.USER)
    connected = await connect_client(args)
    try:
        reply = await _send(connected, n.ADMIN_IDENTITY_CREATE, {
            "name": args.name, "roles": args.role, "public_key": public_key(seed)})
    finally:
        await connected.nc.close()
    write_secret(args.seed_file, seed + "\n")
    _print(args, reply, f"identity {args.name} created; its seed is in {args.seed_file} "
                        f"(connect with ORCH_CREDENTIALS={args.seed_file})")
    return 0


async def _send(connected: Any, command: str, body: dict[str, Any]) -> dict[str, Any]:
    msg = await connected.request(command, orjson.dumps(body), timeout=10)
    reply: dict[str, Any] = orjson.loads(msg.data)
    if not reply.get("ok"):
        error = reply.get("error", {})
        raise CommandFailed(f"{error.get('code')}: {error.get('message')}")
    return reply


def _print(args: argparse.Namespace, reply: dict[str, Any], text: str) -> None:
    print(orjson.dumps(reply).decode() if args.json else text)
