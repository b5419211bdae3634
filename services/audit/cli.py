"""The audit commands of the CLI: events, state, explain and what-if."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import nats.js.errors
import orjson
from nats.aio.client import Client

from domain.what_if import Detector
from infra.log.codec import create_mapper
from infra.log.event_store import EventStore, RecordedEvent, StoreUnavailable
from infra.names import AGENT, TASK, Names
from services.audit.explain import Explainer
from services.audit.render import ProgressBar, explanation, table
from services.audit.replay import state_at
from services.audit.waiting import waiting
from services.audit.what_if import (
    MAX_AXIS,
    MAX_POINTS,
    heartbeat_interval_of,
    recording,
    replay,
    sweep,
)
from services.cli.connection import Unreachable, add_client_flags, connect_client


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
    events.add_argument("--since", type=_time, help="recorded at or after (ISO 8601)")
    events.add_argument("--until", type=_time, help="recorded at or before (ISO 8601)")
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
        "what-if", help="replay recorded silences under other detector settings",
        description="Replays the silences the leader recorded (the liveness record, kept "
                    "7 days) and the deaths in the log under other settings. One point: "
                    "--suspect-after and --dead-after, each death with its verdict. A "
                    "grid: --sweep with dead_after values, a table of points.")
    common(whatif)
    whatif.add_argument("--suspect-after", type=_seconds_list,
                        help="seconds; with --sweep a comma-separated list (default: half "
                             "of each dead_after)")
    whatif.add_argument("--dead-after", type=_seconds, help="seconds (one point)")
    whatif.add_argument("--sweep", type=_seconds_list, metavar="S1,S2,...",
                        help=f"dead_after values of a grid, at most {MAX_AXIS}")
    whatif.add_argument("--failures-before-critical", type=_counts, default=[1],
                        metavar="N1,N2,...", help="flap damping values of the grid "
                                                   "(default 1)")
    whatif.add_argument("--from", dest="start", type=_time, help="window start (ISO 8601)")
    whatif.add_argument("--to", dest="end", type=_time,
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


def _time(raw: str) -> datetime:
    value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2026-11-24T18:00:00Z")
    return value


async def run_audit(args: argparse.Namespace) -> int:
    connected = await connect_client(args)
    nc, names = connected.nc, connected.names
    try:
        # Direct gets, not consumers: the auditor role may create none (permissions.py).
        store = EventStore(nc.jetstream(), names, create_mapper(), direct_reads=True)
        handler = {"events": _events, "state": _state, "explain": _explain,
                   "what-if": _what_if}[args.command]
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


def _subject(names: Names, args: argparse.Namespace) -> str | None:
    kind, ident = (AGENT, args.agent) if args.agent else (TASK, args.task) if args.task else (
        "*", "*")
    if args.type:
        return names.event(kind, ident, args.type)
    return names.aggregate_events(kind, ident) if ident != "*" else None


def _matches(event: RecordedEvent, args: argparse.Namespace) -> bool:
    return (args.before is None or event.position < args.before) and (
        args.since is None or event.recorded_at >= args.since) and (
        args.until is None or event.recorded_at <= args.until)


async def _events(args: argparse.Namespace, nc: Client, names: Names,
                  store: EventStore) -> int:
    subject = _subject(names, args)
    shown = 0
    rows: list[list[Any]] = []
    # An export of a long log shows how far it is (on a terminal only, on stderr).
    bar = None if args.follow else ProgressBar("reading")
    end = await store.last_position() if bar is not None else 0
    async for event in _listing(store, args, subject):
        if args.limit is not None and shown >= args.limit:
            break
        if bar is not None:
            bar(event.position, max(end, event.position))
        shown += 1
        if args.json:
            sys.stdout.write(orjson.dumps(event.to_json()).decode() + "\n")
        elif args.follow:
            print(_row_text(event), flush=True)
        else:
            rows.append(_row(event))
    if bar is not None:
        bar.close()
    if rows:
        print(table(rows, ["position", "recorded_at", "aggregate", "id", "type", "caused_by"]))
    return 0


async def _listing(store: EventStore, args: argparse.Namespace,
                   subject: str | None) -> AsyncIterator[RecordedEvent]:
    last = args.after
    async for event in store.iterate(args.after, subject):
        last = event.position
        if args.before is not None and event.position >= args.before:
            return
        if _matches(event, args):
            yield event
    if not args.follow:
        return
    queue: asyncio.Queue[RecordedEvent] = asyncio.Queue()

    async def collect(event: RecordedEvent) -> None:
        queue.put_nowait(event)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    subscription = await store.tail(last, collect, subject)
    try:
        while not stop.is_set():
            try:
                event = await asyncio.wait_for(queue.get(), 0.5)
            except TimeoutError:
                continue
            if _matches(event, args):
                yield event
    finally:
        await subscription.unsubscribe()


def _row(event: RecordedEvent) -> list[Any]:
    return [event.position, event.recorded_at.isoformat(timespec="milliseconds"), event.kind,
            event.aggregate_id, event.name, event.causation_id or ""]


def _row_text(event: RecordedEvent) -> str:
    return "  ".join(str(c) for c in _row(event))


async def _state(args: argparse.Namespace, nc: Client, names: Names, store: EventStore) -> int:
    position, moment = (int(args.at), None) if args.at.isdigit() else (None, _time(args.at))
    bar = ProgressBar("replaying")
    snapshot = await state_at(store, position=position, time=moment, progress=bar)
    bar.close()
    if args.json:
        print(orjson.dumps(snapshot.to_json()).decode())
        return 0
    print(f"state at position {snapshot.position}"
          + (f" ({snapshot.at.isoformat()})" if snapshot.at else ""))
    print("\nagents")
    print(table([[a.agent_id, a.status, a.incarnation, ",".join(a.capabilities), a.capacity,
                  snapshot.tasks.load(a.agent_id)] for a in snapshot.agents.query()],
                ["agent", "status", "incarnation", "capabilities", "capacity", "load"]))
    print("\nservices")
    print(table([[name, s["instances"], s["healthy"], ",".join(s["tags"])]
                 for name, s in snapshot.catalog.services().items()],
                ["service", "instances", "healthy", "tags"]))
    print("\ntasks")
    print(table([[t.task_id, t.status, t.agent_id or "", t.attempt, t.kind]
                 for t in snapshot.tasks.query(limit=10**9)],
                ["task", "status", "agent", "attempt", "kind"]))
    return 0


async def _explain(args: argparse.Namespace, nc: Client, names: Names,
                   store: EventStore) -> int:
    explainer = Explainer(store, nc.jetstream(), names)
    found = await (explainer.task(args.id) if args.what == "task" else explainer.agent(args.id))
    if found is None:
        print(f"orchestrator: no {args.what} {args.id} in the log", file=sys.stderr)
        return 1
    if args.what == "task":
        found["waiting"] = await _waiting(store, found)
    if args.json:
        print(orjson.dumps(found).decode())
        return 0
    if args.what == "task":
        print(f"task {args.id}: {found['status']} after {found['attempts']} attempt(s)")
        if found["waiting"]:
            print(f"  {found['waiting']['summary']}")
            for reason in found["waiting"]["reasons"]:
                print(f"    {reason['code']}: {reason['message']} ({reason['count']})")
    else:
        print(f"agent {args.id}")
    print("\n".join(explanation(found["chain"])))
    for refused in found.get("stale_results_refused", []):
        print(f"stale result refused at {refused['position']}: {refused['data']['action']} "
              f"from an earlier attempt")
    for moved in found.get("tasks_moved", []):
        print(f"task {moved['task_id']} moved at {moved['position']} to "
              f"{moved['to_agent'] or 'the queue'} ({moved['data'].get('reason')})")
    return 0


async def _waiting(store: EventStore, found: dict[str, Any]) -> dict[str, Any] | None:
    """Why a queued task waits, from the fleet as the log has it now."""
    # The projections are rebuilt by replaying the log rather than asked of a read API:
    # the CLI knows only NATS (no API address), the answer does not depend on which
    # orchestrator is asked or how far behind it is, and it works while none is up.
    # A replay reads the whole log, so it is done only for a task that waits.
    if found["status"] not in ("pending", "retry_wait"):
        return None
    bar = ProgressBar("replaying")
    snapshot = await state_at(store, progress=bar)
    bar.close()
    return waiting(found, snapshot.agents, snapshot.tasks, time.time())


async def _what_if(args: argparse.Namespace, nc: Client, names: Names,
                   store: EventStore) -> int:
    if args.sweep is None and (args.dead_after is None or not args.suspect_after
                               or len(args.suspect_after) != 1):
        print("what-if: give --suspect-after S and --dead-after S, or --sweep S1,S2,...",
              file=sys.stderr)
        return 2
    if args.sweep is not None and (len(args.suspect_after or [1]) * len(args.sweep)
                                   * len(args.failures_before_critical) > MAX_POINTS):
        print(f"what-if: a grid of at most {MAX_POINTS} points", file=sys.stderr)
        return 2
    bar = ProgressBar("replaying")
    try:
        found = await recording(store, nc.jetstream(), names, time.time(), progress=bar)
    finally:
        bar.close()
    start = args.start.timestamp() if args.start else None
    end = args.end.timestamp() if args.end else None
    interval = heartbeat_interval_of(found)
    if args.sweep is not None:
        return _print_sweep(args, sweep(
            found, args.suspect_after, args.sweep, args.failures_before_critical,
            interval, start, end))
    detector = Detector(args.suspect_after[0], args.dead_after,
                        args.failures_before_critical[0], interval)
    body = replay(found, detector, start, end).to_json()
    if args.json:
        print(orjson.dumps(body).decode())
        return 0
    summary = body["summary"]
    print(f"with dead_after={args.dead_after}s (recorded: "
          f"{', '.join(str(d) for d in body['recorded_dead_after']) or 'no deaths'}):")
    print(f"  recorded deaths {summary['recorded_deaths']}, of which false "
          f"{summary['false_deaths_recorded']}; avoided {summary['avoided']}, added "
          f"{summary['added']}, later {summary['later']}, earlier {summary['earlier']}, "
          f"pending {summary['pending']}")
    print(table([[d["agent_id"], d["silence_s"], "yes" if d["resumed"] else "no",
                  "" if d["death_position"] is None else d["death_position"],
                  d["verdict"], "" if d["shift_s"] is None else f"{d['shift_s']:+.3f}s"]
                 for d in body["deaths"]],
                ["agent", "silence_s", "came_back", "recorded_death_at", "verdict",
                 "time_to_move_shift"]))
    if body["unknown"]:
        print(f"unknown coverage (no record kept): {len(body['unknown'])} span(s) over "
              f"{len({u['agent_id'] for u in body['unknown']})} agent(s)")
    return 0


def _print_sweep(args: argparse.Namespace, body: dict[str, Any]) -> int:
    if args.json:
        print(orjson.dumps(body).decode())
        return 0
    points = body["points"]
    columns = ["suspect_after", "dead_after", "failures_before_critical", "false_deaths",
               "real_deaths", "avoided", "added", "later", "earlier", "pending",
               "move_mean_s", "move_p99_s"]
    print(table([["" if p[c] is None else p[c] for c in columns] for p in points],
                columns))
    if any(p["below_resolution"] for p in points):
        print(f"some points suspect sooner than the record's resolution "
              f"({body['record']['resolution_s']}s): their suspicions may be undercounted")
    if body["unknown_agents"]:
        print(f"unknown coverage for {body['unknown_agents']} agent(s): see --json")
    return 0
