"""The audit commands of the CLI: events, state, explain and what-if. Their flags and
dispatch are here; what each one reads and prints is in services/cli/audit/reads.py."""

from __future__ import annotations

import argparse
from typing import Any

import nats.js.errors

from infra.log.event_store import EventStore, StoreUnavailable
from infra.log.format.codec import create_mapper
from infra.names import Names
from services.audit.what_if import MAX_AXIS
from services.cli.audit.limits_what_if import add_limit_flags
from services.cli.audit.reads import HANDLERS, parse_time
from services.cli.common.connection import Unreachable, add_client_flags, connect_client


def add_audit_commands(commands: Any) -> None:
    def common(parser: argparse.ArgumentParser) -> None:
        # The log is read as the CLI's identity: the local operator's has the auditor role.
        add_client_flags(parser)
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    events = commands.add_parser("events", help="list, filter, follow or export the log")
    common(events)
    events.add_argument("--agent", help="only this agent's events")
    events.add_argument("--task", help="only this task's events")
    events.add_argument("--type", help="only events of this type, e.g. DeclaredDead")
    events.add_argument("--after", type=int, default=0, help="positions after this one")
    events.add_argument("--before", type=int, help="positions before this one")
    events.add_argument("--since", type=parse_time, help="recorded at or after (ISO 8601)")
    events.add_argument("--until", type=parse_time, help="recorded at or before (ISO 8601)")
    events.add_argument("--limit", type=int, help="at most this many events")
    events.add_argument("--follow", action="store_true", help="keep printing new events")
    events.epilog = "--json prints JSON lines: one event per line, for export."

    state = commands.add_parser("state", help="agents, catalog and tasks as they were")
    common(state)
    state.add_argument("--at", required=True,
                       help="a log position, or an ISO 8601 time (e.g. 2026-11-24T18:00:00Z)")

    explain = commands.add_parser("explain", help="the causal chain of a task or an agent")
    common(explain)
    explain.add_argument("what", choices=["task", "agent"])
    explain.add_argument("id", help="the task or agent id")

    whatif = commands.add_parser(
        "what-if", help="replay recorded silences under other detector settings, or "
                        "(what-if limits) recorded work under other limits",
        description="Replays the silences the leader recorded (the liveness record, kept "
                    "7 days) and the deaths in the log under other settings. One point: "
                    "--suspect-after and --dead-after, each death with its verdict. A "
                    "grid: --sweep with dead_after values, a table of points.")
    common(whatif)
    whatif.add_argument("mode", nargs="?", choices=["limits"],
                        help="limits: replay a window of submissions and fleet under other "
                             "limits (--set), per key: waits, throughput, the longest wait")
    add_limit_flags(whatif)
    whatif.add_argument("--suspect-after", type=_seconds_list,
                        help="seconds; with --sweep a comma-separated list (default: half "
                             "of each dead_after)")
    whatif.add_argument("--dead-after", type=_seconds, help="seconds (one point)")
    whatif.add_argument("--sweep", type=_seconds_list, metavar="S1,S2,...",
                        help=f"dead_after values of a grid, at most {MAX_AXIS}")
    whatif.add_argument("--failures-before-critical", type=_counts, default=[1],
                        metavar="N1,N2,...", help="flap damping values of the grid "
                                                   "(default 1)")
    whatif.add_argument("--from", dest="start", type=parse_time, help="window start (ISO 8601)")
    whatif.add_argument("--to", dest="end", type=parse_time,
                        help="window end (ISO 8601; default now)")
    whatif.epilog = ("Verdicts: same, earlier, later (the death moves by shift_s), avoided, "
                     "added, pending (still silent when the window ends, before the "
                     "replayed deadline). Time no watch covered is listed as unknown.")


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds") from None
    if not 0 < value <= 3600:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{raw!r}: give more than 0 and at most 3600 s")
    return value


def _seconds_list(raw: str) -> list[float]:
    values = sorted({_seconds(part) for part in raw.split(",")})
    if len(values) > MAX_AXIS:
        raise argparse.ArgumentTypeError(f"at most {MAX_AXIS} values")
    return values


def _counts(raw: str) -> list[int]:
    try:
        values = sorted({int(part) for part in raw.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a list of counts") from None
    if not values or values[0] < 1 or len(values) > MAX_AXIS:
        raise argparse.ArgumentTypeError(f"counts of at least 1, at most {MAX_AXIS}")
    return values


AUDIT_COMMANDS = ("events", "state", "explain", "what-if")


async def run_audit(args: argparse.Namespace) -> int:
    connected = await connect_client(args)
    nc, names = connected.nc, connected.names
    try:
        # Direct gets, not consumers: the auditor role may create none (permissions.py).
        store = EventStore(nc.jetstream(), names, create_mapper(), direct_reads=True)
        handler = HANDLERS[args.command]
        try:
            return await handler(args, nc, names, store)
        except (StoreUnavailable, nats.js.errors.NotFoundError) as exc:
            raise Unreachable(_unreadable(names, connected.identity, exc)) from exc
    finally:
        await nc.close()


def _unreadable(names: Names, identity: str, exc: Exception) -> str:
    """One plain line for a log that could not be read."""
    text = f"{exc!r} {exc.__cause__!r}"
    if "NotFound" in text or "stream not found" in text:
        return (f"no event log {names.events_stream}: has an orchestrator run with "
                f"--subject-prefix {names.prefix} on this NATS?")
    return (f"cannot read the event log {names.events_stream}: no answer in time; may "
            f"{identity!r} read it (the auditor role)?")


