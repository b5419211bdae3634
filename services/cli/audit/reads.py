"""What the CLI's audit commands read and print (their flags and dispatch are in
services/cli/audit/commands.py): events, state, explain and what-if."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson
from nats.aio.client import Client

from domain.agents.what_if import Detector
from infra.log.event_store import EventStore, RecordedEvent
from infra.names import AGENT, TASK, Names
from services.audit.explain import Explainer
from services.audit.render import ProgressBar, explanation, table
from services.audit.replay import state_at
from services.audit.waiting import waiting
from services.audit.what_if import MAX_POINTS, heartbeat_interval_of, recording, replay, sweep
from services.cli.audit.limits_what_if import run_limits_what_if


def parse_time(raw: str) -> datetime:
    value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2026-11-24T18:00:00Z")
    return value


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
    seen = _Seen()
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
            print(_row_text(event, seen), flush=True)
        else:
            rows.append(_row(event, seen))
    if bar is not None:
        bar.close()
    if rows:
        print(table(rows, EVENT_COLUMNS))
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


# `by`: the identity whose command wrote the event (`orchestrator` for its own decisions);
# `caused_by`: the event that set it off, by position and type, when it is one (an event
# written by a command names the command's id, which says nothing more than `by`).
EVENT_COLUMNS = ["position", "recorded_at", "aggregate", "id", "type", "by", "caused_by"]
_SEEN_LIMIT = 100_000


class _Seen:
    """The events listed so far, by id: a cause is named by its position and type."""

    def __init__(self) -> None:
        self.events: dict[str, str] = {}

    def cause(self, event: RecordedEvent) -> str:
        self._remember(event)
        cause = event.causation_id
        if not cause or cause == event.event_id:
            return ""
        if cause in self.events:
            return self.events[cause]
        # A command's id the orchestrator made (services/commands/service.py) says nothing
        # `by` does not; a client's own request id, or an event not listed, is shown.
        return "" if cause.startswith("cmd-") else cause

    def _remember(self, event: RecordedEvent) -> None:
        if len(self.events) >= _SEEN_LIMIT:  # a long --follow: the oldest go first
            del self.events[next(iter(self.events))]
        self.events[event.event_id] = f"{event.position} {event.name}"


def _row(event: RecordedEvent, seen: _Seen) -> list[Any]:
    return [event.position, event.recorded_at.isoformat(timespec="milliseconds"), event.kind,
            event.aggregate_id, event.name, event.identity or "", seen.cause(event)]


def _row_text(event: RecordedEvent, seen: _Seen) -> str:
    return "  ".join(str(c) for c in _row(event, seen))


async def _state(args: argparse.Namespace, nc: Client, names: Names, store: EventStore) -> int:
    position, moment = (int(args.at), None) if args.at.isdigit() else (None, parse_time(args.at))
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
    if found["status"] not in ("pending", "retry_wait", "scheduled"):
        return None
    bar = ProgressBar("replaying")
    snapshot = await state_at(store, progress=bar)
    bar.close()
    return waiting(found, snapshot.agents, snapshot.tasks, time.time(), snapshot.limits)


async def _what_if(args: argparse.Namespace, nc: Client, names: Names,
                   store: EventStore) -> int:
    if args.mode == "limits":
        return await run_limits_what_if(args, store)
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


Handler = Callable[[argparse.Namespace, Client, Names, EventStore], Awaitable[int]]
HANDLERS: dict[str, Handler] = {"events": _events, "state": _state, "explain": _explain,
                                "what-if": _what_if}
