"""The read commands: `agents`, `agent-status`, `tasks`, `task-status`, `services`.

Each reads the read API and prints an aligned table, or JSON with --json. `--watch`
prints again whenever the answer changes, with the API's blocking queries
(`?index=<X-Orch-Index>&wait=`): nothing is polled.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson

from services.audit.render import table
from services.cli.auth import CommandFailed
from services.cli.read_api import Answer, ReadApi, add_api_flags

READ_COMMANDS = ("agents", "agent-status", "tasks", "task-status", "services")
AGENT_STATUSES = ("healthy", "suspect", "unresponsive", "dead", "draining", "left")
TASK_STATUSES = ("pending", "assigned", "running", "retry_wait", "completed", "dead_lettered",
                 "cancelled")
WATCH_WAIT_S = 30.0
PAGE_SIZE = "1000"  # agents (or their instances) a request when reading every page


def add_read_commands(commands: Any) -> None:
    agents = commands.add_parser("agents", help="the agents, filtered (read API)")
    agents.add_argument("--status", choices=AGENT_STATUSES)
    agents.add_argument("--capability", help="only agents with this capability")
    agents.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                        help="only agents with this label; repeatable")
    agents.add_argument("--watch", action="store_true", help="print again on every change")
    add_api_flags(agents)

    agent = commands.add_parser("agent-status", help="one agent and its recent history")
    agent.add_argument("agent_id")
    agent.add_argument("--history", type=int, default=10, metavar="N",
                       help="N events: the first and the latest (default 10)")
    add_api_flags(agent)

    tasks = commands.add_parser("tasks", help="the tasks, by submission order (read API)")
    tasks.add_argument("--status", choices=TASK_STATUSES)
    tasks.add_argument("--agent", help="only tasks on this agent")
    tasks.add_argument("--kind", help="only tasks of this kind")
    tasks.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    tasks.add_argument("--watch", action="store_true", help="print again on every change")
    add_api_flags(tasks)

    task = commands.add_parser("task-status", help="one task and its history")
    task.add_argument("task_id")
    task.add_argument("--history", type=int, default=10, metavar="N",
                      help="N rows of its history: the first event and the latest, each run "
                           "of progress reports as one (default 10; --json: the last N)")
    add_api_flags(task)

    services = commands.add_parser("services", help="the service catalog, or one service's "
                                                    "instances")
    services.add_argument("name", nargs="?", help="a service: its instances")
    services.add_argument("--healthy", action="store_true", help="healthy instances only")
    add_api_flags(services)


async def run_read(args: argparse.Namespace) -> int:
    async with ReadApi(args) as api:
        return await {"agents": _agents, "agent-status": _agent_status, "tasks": _tasks,
                      "task-status": _task_status, "services": _services}[args.command](
            api, args)


# --- listings, with --watch -----------------------------------------------------------------

Fetch = Callable[[int | None], Awaitable[tuple[Any, int]]]


async def _listing(args: argparse.Namespace, fetch: Fetch,
                   show: Callable[[Any], str]) -> int:
    """Print once; with --watch, again each time the answer changes, until Ctrl-C."""
    body, index = await fetch(None)
    _print(args, body, show)
    while args.watch:
        changed, index = await fetch(index)
        if _steady(changed) != _steady(body):
            body = changed
            if not args.json:
                print(f"\n-- at position {index}, "
                      f"{datetime.now(UTC).isoformat(timespec='seconds')}")
            _print(args, body, show)
    return 0


def _steady(body: Any) -> Any:
    """The answer without what every heartbeat changes: a watch prints what happened."""
    if isinstance(body, dict):
        return {k: _steady(v) for k, v in body.items() if k != "last_heartbeat_at"}
    if isinstance(body, list):
        return [_steady(v) for v in body]
    return body


def _print(args: argparse.Namespace, body: Any, show: Callable[[Any], str]) -> None:
    print(orjson.dumps(body).decode() if args.json else show(body), flush=True)


def _blocking(index: int | None) -> dict[str, Any]:
    return {} if index is None else {"index": index, "wait": WATCH_WAIT_S}


async def _get(api: ReadApi, path: str, params: Any, index: int | None) -> Answer:
    if index is not None:
        params = [*params, *((k, str(v)) for k, v in _blocking(index).items())]
    answer = await api.get(path, params, wait=WATCH_WAIT_S if index is not None else None)
    assert answer is not None
    return answer


async def _agents(api: ReadApi, args: argparse.Namespace) -> int:
    params = [(k, v) for k, v in (("status", args.status), ("capability", args.capability))
              if v] + [("label", label) for label in args.label]
    for label in args.label:
        if "=" not in label:
            raise ValueError(f"--label {label}: give key=value")

    async def fetch(index: int | None) -> tuple[Any, int]:
        first, found = await _every_page(api, "/v1/agents", params, "agents", index)
        return {"agents": found}, first.index

    return await _listing(args, fetch, lambda body: _agents_table(body["agents"]))


async def _every_page(api: ReadApi, path: str, params: list[tuple[str, str]], key: str,
                      index: int | None) -> tuple[Answer, list[dict[str, Any]]]:
    """A route that answers a page at a time: its first answer, and the items of every
    page (next_after followed to the last)."""
    first = answer = await _get(api, path, [*params, ("limit", PAGE_SIZE)], index)
    found = list(answer.body[key])
    while answer.body["next_after"] is not None:
        answer = await _get(api, path, [
            *params, ("limit", PAGE_SIZE), ("after", answer.body["next_after"])], None)
        found += answer.body[key]
    return first, found


def _agents_table(agents: list[dict[str, Any]]) -> str:
    return table([[a["agent_id"], a["status"], a["incarnation"],
                   f"{len(a['running'])}/{a['capacity']}", f"{a['load']:.0%}",
                   ",".join(a["capabilities"]), _labels(a["labels"]),
                   _ago(a["last_heartbeat_at"])] for a in agents],
                 ["agent", "status", "incarnation", "running", "load", "capabilities",
                  "labels", "last_heartbeat"])


async def _tasks(api: ReadApi, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ValueError("--limit must be at least 1")
    params = [(k, v) for k, v in (("status", args.status), ("agent", args.agent),
                                  ("kind", args.kind)) if v]

    async def fetch(index: int | None) -> tuple[Any, int]:
        found: list[dict[str, Any]] = []
        after = 0
        answer = await _get(api, "/v1/tasks", [*params, ("limit", str(min(args.limit, 1000)))],
                            index)
        first_index = answer.index
        while True:
            found += answer.body["tasks"]
            after = answer.body["next_after"]
            if after is None or len(found) >= args.limit:
                break
            answer = await _get(api, "/v1/tasks", [
                *params, ("after", str(after)),
                ("limit", str(min(args.limit - len(found), 1000)))], None)
        return {"tasks": found[:args.limit]}, first_index

    return await _listing(args, fetch, lambda body: _tasks_table(body["tasks"]))


def _tasks_table(tasks: list[dict[str, Any]]) -> str:
    return table([[t["task_id"], t["kind"], t["status"], t["agent_id"] or "", t["attempt"],
                   f"{t['progress']:.0%}" if t["progress"] is not None else "",
                   t["submitted_at"]] for t in tasks],
                 ["task", "kind", "status", "agent", "attempt", "progress", "submitted_at"])


async def _services(api: ReadApi, args: argparse.Namespace) -> int:
    if args.name is None:
        answer = await _get(api, "/v1/services", [], None)
        _print(args, answer.body, lambda body: table(
            [[name, s["instances"], s["healthy"], ",".join(s["tags"])]
             for name, s in body["services"].items()],
            ["service", "instances", "healthy", "tags"]))
        return 0
    params = [("healthy", "true")] if args.healthy else []
    first, found = await _every_page(api, f"/v1/services/{quote(args.name, safe='')}", params,
                                     "instances", None)
    body = {"service": args.name, "position": first.body["position"], "instances": found}
    _print(args, body, lambda body: table(
        [[i["agent_id"], i["status"], f"{i['address']}:{i['port']}", ",".join(i["tags"]),
          _labels(i["labels"])] for i in body["instances"]],
        ["agent", "status", "address", "tags", "labels"]))
    return 0


# --- one agent, one task ----------------------------------------------------------------------


async def _details(api: ReadApi, args: argparse.Namespace, what: str,
                   ident: str) -> tuple[Any, list[Any]] | None:
    """One agent's or task's view (None once gone) and its last events; printed as JSON
    (and None returned) with --json."""
    quoted = quote(ident, safe="")
    found = await api.get(f"/v1/{what}s/{quoted}", missing_ok=True)
    history = await api.get(f"/v1/{what}s/{quoted}/history", missing_ok=True)
    if found is None and history is None:
        raise CommandFailed(f"not_found: no {what} {ident}")
    events = history.body["events"] if history and args.history > 0 else []
    if args.json:
        print(orjson.dumps({what: found.body if found else None,
                            "history": events[-args.history:] if events else []}).decode())
        return None
    return found, events


async def _agent_status(api: ReadApi, args: argparse.Namespace) -> int:
    details = await _details(api, args, "agent", args.agent_id)
    if details is None:
        return 0
    found, events = details
    if found is None:
        print(f"agent {args.agent_id}: not registered; its last events:")
    else:
        a = found.body
        print(_fields([
            ("agent", a["agent_id"]), ("status", a["status"]),
            ("incarnation", a["incarnation"]),
            ("running", f"{len(a['running'])}/{a['capacity']}: "
                        f"{', '.join(a['running']) or '-'}"),
            ("load", f"{a['load']:.0%} (its own report)"),
            ("capabilities", ", ".join(a["capabilities"]) or "-"),
            ("kinds", ", ".join(a["kinds"]) or "any"), ("labels", _labels(a["labels"]) or "-"),
            ("services", ", ".join(s["name"] for s in a["services"]) or "-"),
            ("registered_at", a["registered_at"]),
            ("last_heartbeat", f"{a['last_heartbeat_at']} ({_ago(a['last_heartbeat_at'])})"
             if a["last_heartbeat_at"] else "never")]))
    print(_history(events, args.history))
    return 0


async def _task_status(api: ReadApi, args: argparse.Namespace) -> int:
    details = await _details(api, args, "task", args.task_id)
    if details is None:
        return 0
    found, events = details
    if found is None:
        print(f"task {args.task_id}: no longer on the board (finished longer ago than the "
              f"retention); its last events:")
    else:
        t = found.body
        print(_fields([
            ("task", t["task_id"]), ("kind", t["kind"]), ("status", t["status"]),
            ("agent", t["agent_id"] or "-"),
            ("attempt", f"{t['attempt']} of at most {t['max_attempts']}"),
            ("failures", t["failures"]),
            ("progress", f"{t['progress']:.0%}" if t["progress"] is not None else "-"),
            ("requires", ", ".join(t["requires"]) or "-"), ("priority", t["priority"]),
            ("submitted_at", t["submitted_at"]), ("updated_at", t["updated_at"]),
            ("payload", orjson.dumps(t["payload"]).decode()),
            *([("result", orjson.dumps(t["result"]).decode())] if t["result"] is not None
              else []),
            *([("error", t["error"])] if t["error"] else [])]))
    print(_history(events, args.history))
    return 0


def _history(events: list[dict[str, Any]], rows: int) -> str:
    """The history as a table of at most `rows` rows: each run of Progressed as its last
    report (how many it stands for), then the first row and the latest, so that a long
    task's reports do not hide how it began (Submitted) or moved (Reassigned)."""
    folded: list[tuple[dict[str, Any], int]] = []  # (event, reports it stands for)
    for event in events:
        if event["type"] == "Progressed" and folded and folded[-1][0]["type"] == "Progressed":
            folded[-1] = (event, folded[-1][1] + 1)
        else:
            folded.append((event, 1))
    shown: list[list[Any]] = [_event_row(e, n) for e, n in folded]
    left_out = len(shown) - rows
    if left_out > 0:
        # The first, a row saying how many are left out, and the latest.
        shown = [shown[0], ["...", "", "", "", f"{left_out + 1} more", "", ""],
                 *shown[len(shown) - (rows - 2):]] if rows > 2 else shown[-rows:]
    head = f"\nhistory: {len(events)} event(s)" + (
        f", {len(folded)} row(s) with the progress reports folded" if len(folded) < len(events)
        else "")
    return head + "\n" + table(shown, ["position", "recorded_at", "aggregate", "id", "type",
                                       "by", "details"])


def _event_row(event: dict[str, Any], reports: int) -> list[Any]:
    details = _gist(event["data"])
    if reports > 1:
        details += f" (the last of {reports} reports)"
    return [event["position"], event["recorded_at"], event["aggregate"], event["aggregate_id"],
            event["type"], event.get("identity") or "", details]


def _gist(data: dict[str, Any]) -> str:
    keys = ("agent_id", "from_agent", "attempt", "status", "reason", "error", "incarnation")
    said = [f"{k}={data[k]}" for k in keys if data.get(k) not in (None, "")]
    if isinstance(data.get("progress"), int | float):
        said.append(f"progress={data['progress']:.0%}")
    return " ".join(said)


def _fields(pairs: list[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in pairs)


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _ago(moment: str | None) -> str:
    if not moment:
        return "never"
    seconds = (datetime.now(UTC) - datetime.fromisoformat(moment)).total_seconds()
    return f"{max(seconds, 0):.1f}s ago"
