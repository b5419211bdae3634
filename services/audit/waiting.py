"""Why a queued task waits, from the projections at the time asked."""

from __future__ import annotations

from typing import Any

from domain.tasks.placement import PLACEABLE, Candidate, why_waiting
from domain.tasks.task import TaskStatus
from projections.board.key_gate import KeyGate
from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentHealth
from projections.limits import Limits
from services.audit.reasons import iso


def fleet(agents: AgentHealth, board: TaskBoard) -> list[Candidate]:
    """Every agent as placement sees it, whatever its status: to say why none fits."""
    return [
        Candidate(v.agent_id, v.incarnation, frozenset(v.capabilities), v.capacity,
                  board.load(v.agent_id), v.status, frozenset(v.kinds), v.labels)
        for v in agents.agents.values()
    ]


def waiting(found: dict[str, Any], agents: AgentHealth, board: TaskBoard,
            now: float, limits: Limits | None = None) -> dict[str, Any] | None:
    """Why an explained task waits and when its retry falls due; None if it does not wait."""
    status = found["status"]
    if status not in (TaskStatus.PENDING, TaskStatus.RETRY_WAIT, TaskStatus.SCHEDULED):
        return None
    view = board.get(found["task_id"])
    selector = view.selector if view is not None else ()
    reasons = why_waiting(fleet(agents, board), found["requires"], found["kind"] or None,
                          selector)
    body: dict[str, Any] = {
        "reasons": [{"code": r.code, "message": r.message, "count": r.count}
                    for r in reasons],
        "retry_at": None, "retry_in_s": None,
    }
    blocking = [r.message for r in reasons if r.code != PLACEABLE]
    summary = ("waiting for an agent: " + "; ".join(blocking) if blocking and not any(
        r.code == PLACEABLE for r in reasons) else "an agent can take it: it is placed next")
    held = _unresponsive(agents, found["requires"])
    if held:
        body["unresponsive"] = held
        if blocking and not any(r.code == PLACEABLE for r in reasons):
            first = held[0]
            summary += (f"; {first['agent_id']} left its work undone and is out of "
                        f"placement until {first['until']}")
    key = view.concurrency_key if view is not None else ""
    hold = KeyGate(limits, board.flow).holds(key, now) if key and limits else None
    if hold is not None:
        limit = {"code": hold.code, "message": hold.message, "count": 0, "key": key,
                 "next_at": iso(hold.next_at) if hold.next_at else None}
        body["reasons"].insert(0, limit)
        body["limit"] = limit
        summary = f"waiting for its key's limit: {hold.message}"
    if view is not None and view.fairness_key and len(board.waiting) > 1:
        body["fairness_key"] = view.fairness_key
    retry_at = found.get("retry_at")
    if status != TaskStatus.PENDING and isinstance(retry_at, int | float) and retry_at:
        # A retry's backoff, or a scheduled task's time: placed not before it.
        what = "retry" if status == TaskStatus.RETRY_WAIT else "scheduled time"
        body["retry_at"] = iso(retry_at)
        body["retry_in_s"] = round(max(0.0, retry_at - now), 3)
        if retry_at > now:
            verb = "to retry" if status == TaskStatus.RETRY_WAIT else "for its scheduled time"
            summary = f"waiting {verb}: due at {iso(retry_at)} (in {retry_at - now:.1f}s)"
        else:
            summary = f"the {what} fell due at {iso(retry_at)}; {summary}"
    body["summary"] = summary
    return body


def _unresponsive(agents: AgentHealth, requires: list[str]) -> list[dict[str, Any]]:
    """The capable agents out of placement for leaving their work undone, the one back
    first first."""
    needed = set(requires)
    found = [(until, agent_id) for agent_id, until in agents.unresponsive.items()
             if (view := agents.get(agent_id)) is not None
             and needed.issubset(view.capabilities)]
    return [{"agent_id": agent_id, "until": iso(until)} for until, agent_id in sorted(found)]
