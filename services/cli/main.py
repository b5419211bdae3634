"""The `orchestrator` command line: run the service, a demo agent, client and security
commands, the fleet's agents, tasks and services, audits, schemas. (The benchmarks
are not part of it: `python -m bench` from a clone.)

Settings: each flag falls back to its ORCH_* variable, then to its default. Client
commands connect to ORCH_NATS_URL (default: the embedded server on this machine,
nats://127.0.0.1:<ORCH_EMBEDDED_NATS_PORT>) as the identity of ORCH_CREDENTIALS (default:
the local operator's, <data dir>/auth/operator.nk); read commands (agents, agent-status,
tasks, task-status, services) ask the read API at --api-url (default from ORCH_HTTP_HOST
and ORCH_HTTP_PORT) with ORCH_API_TOKEN or <data dir>/auth/read.token.

Exit codes: 0 done; 1 refused by the orchestrator or the read API (its code and message
on stderr), or by NATS for a command the identity's roles do not allow, an `auth` command
refused (keys that differ, or an incomplete set: its code and reason), or an unexpected
error; 2 bad usage or input; 3 cannot start (a port in use,
keys missing, an open NATS with auth on); 4 cannot reach NATS or the read API, or no
orchestrator answered. Errors are one or two lines on stderr; --log-level DEBUG adds the
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import nats.errors

from infra import settings as settings_module
from infra.startup import CannotStart
from services.cli.admin import WRITE_COMMANDS, add_write_commands, run_write
from services.cli.audit.commands import AUDIT_COMMANDS, add_audit_commands, run_audit
from services.cli.auth import SECURITY_COMMANDS, CommandFailed, add_security_commands, run_security
from services.cli.auth_keys import KeysRefused
from services.cli.common.connection import Denied, Unreachable
from services.cli.completion import add_completion_command, run_completion
from services.cli.demo.agent import AgentRefused, add_agent_command, run_agent, until_signalled
from services.cli.fleet import READ_COMMANDS, add_read_commands, run_read
from services.cli.limits import add_limits_command, run_limits
from services.cli.schedule import add_schedule_command, run_schedule
from services.cli.submit import add_submit_command, run_submit

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_CANNOT_START = 3
EXIT_PORT_IN_USE = EXIT_CANNOT_START
EXIT_UNREACHABLE = 4


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


async def _up(args: argparse.Namespace) -> None:
    from services.app import Orchestrator

    settings = settings_module.from_args(args)
    _configure_logging(settings.log_level)
    orchestrator = Orchestrator(settings)
    await orchestrator.start()
    scheme = "https" if settings.tls_cert else "http"
    print(f"orchestrator ready: {scheme}://{settings.http_host}:{orchestrator.http_port} "
          f"prefix={settings.subject_prefix} auth={settings.auth}", flush=True)
    if settings.auth_on:
        keys = orchestrator.access_control.keys
        print(f"operator credentials: {keys.operator} (the CLI here uses them)\n"
              f"read API: curl -H \"Authorization: Bearer $(cat {keys.read_token})\" "
              f"{scheme}://{settings.http_host}:{orchestrator.http_port}/v1/agents", flush=True)
        # The token goes in the link's fragment, which the browser never sends; the line
        # builds the link from the file, so the token itself is never printed.
        print(f"dashboard: echo \"{scheme}://{settings.http_host}:{orchestrator.http_port}"
              f"/ui/#token=$(cat {keys.read_token})\"", flush=True)
    else:
        print(f"dashboard: {scheme}://{settings.http_host}:{orchestrator.http_port}/ui/",
              flush=True)
    try:
        await until_signalled()
    finally:
        await orchestrator.stop()


def _schemas(args: argparse.Namespace) -> None:
    from services.schemas import write_schemas

    for path in write_schemas(Path(args.out)):
        print(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description="Coordination service for fleets of agents, event-sourced on NATS "
                    "JetStream.",
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser(
        "up", help="run the orchestrator (embedded nats-server unless --nats-url is set)",
        description="Run the orchestrator. Each flag falls back to its environment variable.",
    )
    settings_module.add_flags(up)
    add_agent_command(commands)
    add_submit_command(commands)
    add_schedule_command(commands)
    add_read_commands(commands)
    add_write_commands(commands)
    add_limits_command(commands)
    add_security_commands(commands)
    add_audit_commands(commands)

    schemas = commands.add_parser("schemas", help="write the protocol's JSON Schemas")
    schemas.add_argument("--out", default="docs/schemas", help="output directory")
    add_completion_command(commands)
    _no_abbreviations(parser)
    return parser


def _no_abbreviations(parser: argparse.ArgumentParser) -> None:
    """No parser takes a prefix of a flag for the flag (`agents --watc` once started an
    endless watch): argparse reads allow_abbrev when it parses, so it is set on the whole
    tree here rather than at each add_parser."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _no_abbreviations(sub)


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command not in ("up", "agent") and hasattr(args, "log_level"):
        _configure_logging(args.log_level)
    if args.command == "up":
        asyncio.run(_up(args))
    elif args.command == "agent":
        _configure_logging(args.log_level)
        asyncio.run(run_agent(args))
    elif args.command == "submit":
        return asyncio.run(run_submit(args))
    elif args.command == "schedule":
        return asyncio.run(run_schedule(args))
    elif args.command in READ_COMMANDS:
        return asyncio.run(run_read(args))
    elif args.command in WRITE_COMMANDS:
        return asyncio.run(run_write(args))
    elif args.command == "limits":
        return asyncio.run(run_limits(args))
    elif args.command == "completion":
        return run_completion(args, parser)
    elif args.command in AUDIT_COMMANDS:
        return asyncio.run(run_audit(args))
    elif args.command in SECURITY_COMMANDS:
        return asyncio.run(run_security(args))
    elif args.command == "schemas":
        _schemas(args)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # here, not at exit, so that a closed stdout is caught
    except BrokenPipeError:
        return _stdout_closed()


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = getattr(args, "log_level", None) or (
        os.environ.get("ORCH_LOG_LEVEL") if args.command == "up" else None)
    debug = str(level or "").upper() == "DEBUG"
    try:
        return _run_reporting(args, parser, debug)
    except KeyboardInterrupt:
        return 0


def _stdout_closed() -> int:
    """The reader of stdout went away (`orchestrator tasks | head`): the command ends
    quietly and successfully, as `head` expects. stdout is pointed at /dev/null so that
    the interpreter's last flush at exit does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


def _say(debug: bool, text: str) -> None:
    """A failure in one plain line; under --log-level DEBUG its traceback first."""
    if debug:
        traceback.print_exc()
    print(f"orchestrator: {text}", file=sys.stderr)


def _run_reporting(args: argparse.Namespace, parser: argparse.ArgumentParser,
                   debug: bool) -> int:
    failures: tuple[tuple[type[BaseException], int], ...] = (
        (AgentRefused, EXIT_REFUSED), (CommandFailed, EXIT_REFUSED), (Denied, EXIT_REFUSED),
        (KeysRefused, EXIT_REFUSED),
        (CannotStart, EXIT_CANNOT_START), (Unreachable, EXIT_UNREACHABLE),
        (ValueError, EXIT_USAGE),
    )
    try:
        return _run(args, parser)
    except BrokenPipeError:
        raise  # main ends the command quietly
    except nats.errors.NoRespondersError:
        _say(debug, "no orchestrator answered: is it running, with this --subject-prefix?")
        return EXIT_UNREACHABLE
    except (nats.errors.TimeoutError, TimeoutError):
        _say(debug, "no answer in time: is the orchestrator running, and may your identity "
                    "send this (its roles)?")
        return EXIT_UNREACHABLE
    except Exception as exc:
        for kind, code in failures:
            if isinstance(exc, kind):
                _say(debug, str(exc))
                return code
        if debug:
            raise
        _say(debug, f"unexpected error: {type(exc).__name__}: {exc} (--log-level DEBUG "
                    "shows where)")
        return EXIT_REFUSED


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
