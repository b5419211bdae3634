"""The soak's invariants, checked on the exported log alone (`orchestrator events
--json`: one event a line, as dicts) and what the soak itself knows: the tasks it
submitted and how each should end, the agent processes it killed, the task board an
orchestrator serves and the outcomes its client was pushed.

Each invariant has a name; `check` returns, for each, the problems found (none: it
held), and a few counts of what the log shows."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TERMINAL = ("Completed", "DeadLettered", "Cancelled")
FINISHED = ("completed", "dead_lettered", "cancelled")
STATUS_AFTER = {
    "Assigned": "assigned", "Reassigned": "assigned", "Accepted": "running",
    "Progressed": "running", "Requeued": "pending", "Failed": "retry_wait",
    "Completed": "completed", "DeadLettered": "dead_lettered", "Cancelled": "cancelled",
}
PLACEMENTS = ("Assigned", "Reassigned")
ACCEPT_TIMEOUT = "accept_timeout"  # a move (or end) for an assignment left unaccepted
REPORTS = ("Accepted", "Completed", "Failed", "DeadLettered")
# A placement's cause names the board position its decision saw (services/leader).
DECIDED_AT = re.compile(r"^dispatch-(\d+)\.")
INVARIANTS = (
    "acknowledged_submits_in_log", "every_task_finished", "finished_once",
    "finished_by_rule", "no_false_deaths", "every_kill_detected",
    "no_placement_on_unavailable_agent", "one_placement_per_token", "reports_fenced",
    "board_agrees_with_log", "outcomes_agree_with_log",
)
MAX_SHOWN = 20  # problems listed per invariant (all are counted)


@dataclass(frozen=True)
class Kill:
    """An agent process the soak SIGKILLed, and the incarnation it had registered as."""

    agent_id: str
    incarnation: int
    at: float  # epoch seconds


@dataclass
class Verdict:
    problems: dict[str, list[str]] = field(default_factory=lambda: {n: [] for n in INVARIANTS})
    counts: Counter[str] = field(default_factory=Counter)
    # Placements on an agent that became unavailable after the state its decision saw:
    # the decision raced the drain or death (counted, not a failure).
    raced: list[str] = field(default_factory=list)

    def add(self, invariant: str, problem: str) -> None:
        self.problems[invariant].append(problem)

    @property
    def failed(self) -> list[str]:
        return [name for name, found in self.problems.items() if found]

    def to_json(self) -> dict[str, Any]:
        return {"held": {name: not found for name, found in self.problems.items()},
                "problems": {name: {"count": len(found), "first": found[:MAX_SHOWN]}
                             for name, found in self.problems.items() if found},
                "counts": dict(self.counts), "raced_placements": len(self.raced),
                "raced_first": self.raced[:MAX_SHOWN]}


@dataclass
class _AgentState:
    incarnation: int = 0
    draining_at: int | None = None  # the position that made it unavailable
    dead_at: int | None = None
    left_at: int | None = None
    unresponsive_at: int | None = None

    def unavailable(self) -> tuple[str, int] | None:
        for what, at in (("left", self.left_at), ("dead", self.dead_at),
                         ("draining", self.draining_at),
                         ("unresponsive", self.unresponsive_at)):
            if at is not None:
                return what, at
        return None


def check(events: Iterable[Mapping[str, Any]], expected: Mapping[str, frozenset[str]],
          acknowledged: Iterable[str], kills: Iterable[Kill],
          board: Mapping[str, str] | None = None,
          outcomes: Mapping[str, str] | None = None) -> Verdict:
    """Every invariant over the whole log. `expected`: task id -> the terminal event types
    its submission allows (the soak's tasks; others in the log are only checked for the
    rules every task obeys). A submit never acknowledged may be missing from the log."""
    verdict = Verdict()
    acked = set(acknowledged)
    log = sorted(events, key=lambda e: int(e["position"]))
    tasks = [e for e in log if e["aggregate"] == "task"]
    verdict.counts.update(e["type"] for e in log)
    verdict.counts["events"] = len(log)
    submitted = {e["aggregate_id"]: e["data"] for e in tasks if e["type"] == "Submitted"}
    for task_id in sorted(acked - set(submitted)):
        verdict.add("acknowledged_submits_in_log", f"{task_id}: acknowledged, not in the log")
    _finishes(tasks, submitted, {t: expected[t] for t in set(expected) & (
        set(submitted) | acked)}, verdict)
    _deaths(log, list(kills), verdict)
    _placements(log, verdict)
    status = _fenced_statuses(tasks, verdict)
    if board is not None:
        for task_id in sorted(set(status) | set(board)):
            if task_id not in board and status[task_id] in FINISHED:
                verdict.counts["finished_off_the_board"] += 1  # past its retention bound
                continue
            if board.get(task_id) != status.get(task_id):
                verdict.add("board_agrees_with_log", f"{task_id}: board says "
                            f"{board.get(task_id)}, the log {status.get(task_id)}")
    if outcomes is not None:
        for task_id in sorted(set(expected) & acked):
            if outcomes.get(task_id) != status.get(task_id):
                verdict.add("outcomes_agree_with_log", f"{task_id}: the client was told "
                            f"{outcomes.get(task_id)}, the log says {status.get(task_id)}")
    return verdict


def _finishes(tasks: list[Mapping[str, Any]], submitted: Mapping[str, Any],
              expected: Mapping[str, frozenset[str]], verdict: Verdict) -> None:
    ends: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for event in tasks:
        if event["type"] in TERMINAL:
            ends[event["aggregate_id"]].append(event)
        elif event["type"] == "Failed" or event["data"].get("reason") == ACCEPT_TIMEOUT:
            data = event["data"]  # a retry, or a move counted as a failure: one left
            limit = submitted.get(event["aggregate_id"], {}).get("max_attempts", 0)
            if not data.get("retryable", True) or data["failures"] >= limit:
                verdict.add("finished_by_rule", f"{event['aggregate_id']}: {event['type']} "
                            f"after failure {data['failures']} of {limit} (retryable "
                            f"{data.get('retryable', True)}) at {event['position']}")
    for task_id in sorted(set(submitted) | set(expected)):
        found = ends.get(task_id, [])
        if not found:
            verdict.add("every_task_finished", f"{task_id}: not finished"
                        + ("" if task_id in submitted else " (never submitted)"))
            continue
        if len(found) > 1:
            verdict.add("finished_once", f"{task_id}: " + ", ".join(
                f"{e['type']} at {e['position']}" for e in found))
        end = found[0]
        data, limit = end["data"], submitted.get(task_id, {}).get("max_attempts", 0)
        unaccepted = end["type"] == "DeadLettered" and data.get("reason") == ACCEPT_TIMEOUT
        if unaccepted:  # its last allowed attempt left unaccepted: any task may end so
            verdict.counts["dead_lettered_unaccepted"] += 1
        allowed = expected.get(task_id)
        if allowed is not None and end["type"] not in allowed and not unaccepted:
            verdict.add("finished_by_rule", f"{task_id}: {end['type']} at {end['position']}"
                        f", expected one of {sorted(allowed)}")
        if end["type"] == "DeadLettered" and task_id in submitted and data["failures"] < limit \
                and (data["retryable"] or unaccepted):
            verdict.add("finished_by_rule", f"{task_id}: dead-lettered at {end['position']} "
                        f"after {data['failures']} of {limit} failures"
                        + (" (accept timeouts)" if unaccepted else ""))


def _deaths(log: list[Mapping[str, Any]], kills: list[Kill], verdict: Verdict) -> None:
    killed = {(k.agent_id, k.incarnation) for k in kills}
    declared = set()
    for event in log:
        if event["type"] == "DeclaredDead":
            key = (event["aggregate_id"], int(event["data"]["incarnation"]))
            declared.add(key)
            if key not in killed:
                verdict.add("no_false_deaths", f"{key[0]} incarnation {key[1]} declared dead "
                            f"at {event['position']}, never killed")
    for agent_id, incarnation in sorted(killed - declared):
        verdict.add("every_kill_detected", f"{agent_id} incarnation {incarnation} killed, "
                    f"never declared dead")


def _placements(log: list[Mapping[str, Any]], verdict: Verdict) -> None:
    agents: dict[str, _AgentState] = defaultdict(_AgentState)
    tokens: Counter[str] = Counter()
    attempts: Counter[tuple[str, int]] = Counter()
    for event in log:
        kind, position, data = event["type"], int(event["position"]), event["data"]
        if event["aggregate"] == "agent":
            state = agents[event["aggregate_id"]]
            if kind in ("Registered", "Reregistered"):
                agents[event["aggregate_id"]] = _AgentState(int(data.get("incarnation", 1)))
            elif kind == "DrainStarted":
                state.draining_at = position
            elif kind == "Undrained":
                state.draining_at = None
            elif kind == "DeclaredDead":
                state.dead_at = position
            elif kind == "Deregistered":
                state.left_at = position
            elif kind == "MarkedUnresponsive":
                state.unresponsive_at = position
            elif kind == "Readmitted":
                state.unresponsive_at = None
            continue
        if kind not in PLACEMENTS:
            continue
        task_id, agent_id = event["aggregate_id"], data["agent_id"]
        tokens[data["token"]] += 1
        attempts[(task_id, int(data["attempt"]))] += 1
        if tokens[data["token"]] == 2 or attempts[(task_id, int(data["attempt"]))] == 2:
            verdict.add("one_placement_per_token", f"{task_id}: token or attempt "
                        f"{data['attempt']} placed again at {position}")
        state = agents[agent_id]
        why = state.unavailable()
        if why is None and int(data["incarnation"]) != state.incarnation:
            why = (f"at incarnation {state.incarnation}, not {data['incarnation']}", 0)
        if why is None:
            continue
        decided = DECIDED_AT.match(event.get("causation_id") or "")
        text = f"{task_id}: {kind} to {agent_id} ({why[0]} since {why[1]}) at {position}"
        if decided and int(decided.group(1)) < why[1]:
            verdict.raced.append(text + f", decided at {decided.group(1)}")
        else:
            verdict.add("no_placement_on_unavailable_agent", text
                        + (f", decided at {decided.group(1)}" if decided else ""))


def _fenced_statuses(tasks: list[Mapping[str, Any]], verdict: Verdict) -> dict[str, str]:
    """Each task's status as the log leaves it; reports must carry the current token."""
    status: dict[str, str] = {}
    holder: dict[str, tuple[str, str]] = {}  # task -> (token, agent) of its placement
    for event in tasks:
        kind, task_id, data = event["type"], event["aggregate_id"], event["data"]
        if kind == "Submitted":
            status[task_id] = "scheduled" if data.get("not_before") else "pending"
            continue
        if kind in PLACEMENTS:
            holder[task_id] = (data["token"], data["agent_id"])
        elif kind in REPORTS:
            token, agent = holder.get(task_id, ("", ""))
            if data.get("token") != token or data.get("agent_id", agent) != agent:
                verdict.add("reports_fenced", f"{task_id}: {kind} at {event['position']} "
                            f"from {data.get('agent_id')} with another token than its "
                            f"placement's ({agent})")
        if kind in STATUS_AFTER:
            status[task_id] = STATUS_AFTER[kind]
    return status
