"""The soak's invariant checker (bench/soak/invariants.py) on hand-built logs: a clean one
holds every invariant, and each kind of breach is named by its invariant."""

from __future__ import annotations

from typing import Any

from bench.soak.invariants import INVARIANTS, Kill, check

COMPLETES, DEAD = frozenset({"Completed"}), frozenset({"DeadLettered"})


class Log:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, aggregate: str, ident: str, kind: str, cause: str | None = None,
            **data: Any) -> int:
        position = len(self.events) + 1
        self.events.append({"position": position, "aggregate": aggregate,
                            "aggregate_id": ident, "type": kind, "causation_id": cause,
                            "recorded_at": "2026-12-08T00:00:00+00:00", "data": data})
        return position

    def place(self, task: str, agent: str, token: str, attempt: int = 1,
              incarnation: int = 1, decided: int | None = None) -> None:
        decided = len(self.events) if decided is None else decided
        self.add("task", task, "Assigned", f"dispatch-{decided}.1", agent_id=agent,
                 incarnation=incarnation, attempt=attempt, token=token)
        self.add("task", task, "Accepted", token=token, attempt=attempt)


def clean() -> Log:
    log = Log()
    log.add("agent", "a1", "Registered")
    log.add("agent", "a2", "Registered")
    log.add("task", "t1", "Submitted", max_attempts=3)
    log.place("t1", "a1", "k1")
    log.add("task", "t1", "Completed", token="k1", agent_id="a1", attempt=1)
    log.add("task", "t2", "Submitted", max_attempts=2)
    log.place("t2", "a2", "k2")
    log.add("task", "t2", "Failed", token="k2", agent_id="a2", retryable=True, failures=1)
    log.add("agent", "a2", "DeclaredDead", incarnation=1)
    log.place("t2", "a1", "k3", attempt=2)
    log.add("task", "t2", "DeadLettered", token="k3", agent_id="a1", retryable=True,
            failures=2)
    return log


KILLS = [Kill("a2", 1, 0.0)]
EXPECTED = {"t1": COMPLETES, "t2": DEAD}
BOARD = {"t1": "completed", "t2": "dead_lettered"}


def failed(log: Log, **overrides: Any) -> list[str]:
    given: dict[str, Any] = {"expected": EXPECTED, "acknowledged": {"t1", "t2"},
                             "kills": KILLS, "board": BOARD, "outcomes": BOARD}
    return check(log.events, **(given | overrides)).failed


def test_a_clean_log_holds_every_invariant() -> None:
    verdict = check(clean().events, EXPECTED, {"t1", "t2"}, KILLS, BOARD, BOARD)
    assert verdict.failed == [] and verdict.raced == []
    assert set(verdict.to_json()["held"]) == set(INVARIANTS)
    assert verdict.counts["Completed"] == 1 and verdict.counts["DeadLettered"] == 1


def test_a_task_finished_twice_or_not_at_all() -> None:
    log = clean()
    log.add("task", "t1", "Completed", token="k1", agent_id="a1", attempt=1)
    assert failed(log) == ["finished_once"]
    log = clean()
    log.add("task", "t3", "Submitted", max_attempts=1)
    assert failed(log, board=BOARD | {"t3": "pending"}) == ["every_task_finished"]
    assert failed(clean(), acknowledged={"t1", "t2", "t4"},
                  expected=EXPECTED | {"t4": COMPLETES}) == [
        "acknowledged_submits_in_log", "every_task_finished"]
    # A submit never acknowledged may be missing from the log.
    assert failed(clean(), expected=EXPECTED | {"t4": COMPLETES}) == []


def test_an_end_the_rules_do_not_allow() -> None:
    assert failed(clean(), expected={"t1": DEAD, "t2": DEAD}) == ["finished_by_rule"]
    log = clean()
    log.events[-1]["data"]["failures"] = 1  # dead-lettered with a retry left
    assert failed(log) == ["finished_by_rule"]


def test_an_assignment_left_unaccepted_counts_as_a_failure() -> None:
    log = Log()
    log.add("agent", "a1", "Registered")
    log.add("task", "t1", "Submitted", max_attempts=2)
    log.add("task", "t1", "Assigned", "dispatch-2.1", agent_id="a1", incarnation=1,
            attempt=1, token="k1")
    log.add("task", "t1", "Requeued", reason="accept_timeout", failures=1)
    log.add("task", "t1", "Assigned", "dispatch-4.1", agent_id="a1", incarnation=1,
            attempt=2, token="k2")
    log.add("task", "t1", "DeadLettered", token="k2", agent_id="a1", retryable=False,
            failures=2, reason="accept_timeout")
    given: dict[str, Any] = {"expected": {"t1": COMPLETES}, "acknowledged": {"t1"},
                             "kills": []}
    verdict = check(log.events, **given)
    assert verdict.failed == [] and verdict.counts["dead_lettered_unaccepted"] == 1
    log.events[1]["data"]["max_attempts"] = 3  # ended with an attempt left
    assert check(log.events, **given).failed == ["finished_by_rule"]
    log.events[1]["data"]["max_attempts"] = 1  # moved when it should have ended
    assert check(log.events, **given).failed == ["finished_by_rule"]
    log.events[1]["data"]["max_attempts"] = 2
    log.add("agent", "a1", "MarkedUnresponsive", incarnation=1)
    log.add("task", "t2", "Submitted", max_attempts=1)
    log.place("t2", "a1", "k3")
    log.add("task", "t2", "Completed", token="k3", agent_id="a1", attempt=1)
    assert check(log.events, **given).failed == ["no_placement_on_unavailable_agent"]


def test_deaths_must_be_the_kills() -> None:
    assert failed(clean(), kills=[]) == ["no_false_deaths"]
    assert failed(clean(), kills=[*KILLS, Kill("a1", 1, 0.0)]) == ["every_kill_detected"]


def test_placements_on_a_drained_or_dead_agent_and_repeated_tokens() -> None:
    log = clean()
    drained = log.add("agent", "a1", "DrainStarted", incarnation=1)
    log.add("task", "t3", "Submitted", max_attempts=1)
    log.place("t3", "a1", "k4")  # decided after it saw the drain
    log.add("task", "t3", "Completed", token="k4", agent_id="a1", attempt=1)
    assert failed(log, board=BOARD | {"t3": "completed"}) == [
        "no_placement_on_unavailable_agent"]
    log.events[-3]["causation_id"] = f"dispatch-{drained - 1}.7"  # decided before: raced
    verdict = check(log.events, EXPECTED, {"t1", "t2"}, KILLS, BOARD | {"t3": "completed"})
    assert verdict.failed == [] and len(verdict.raced) == 1
    log = clean()
    log.add("task", "t1", "Reassigned", "x", agent_id="a1", incarnation=1, attempt=3,
            token="k1")
    assert "one_placement_per_token" in failed(log)


def test_a_report_with_a_past_token_and_a_board_that_disagrees() -> None:
    log = clean()
    log.events[4]["data"]["token"] = "k0"  # t1's Completed
    assert failed(log) == ["reports_fenced"]
    assert failed(clean(), board=BOARD | {"t1": "running"}) == ["board_agrees_with_log"]
    # A finished task may have left a bounded board (ORCH_FINISHED_TASK_LIMIT); no other.
    assert failed(clean(), board={"t2": "dead_lettered"}) == []
    log = clean()
    log.add("task", "t3", "Submitted", max_attempts=1)
    assert "board_agrees_with_log" in failed(log)
    assert failed(clean(), outcomes=BOARD | {"t2": "completed"}) == [
        "outcomes_agree_with_log"]
