"""What `task-status` and `events` print of a history: how a long task began and moved
stays in view, progress shows its percentage, and each event says who and what caused it."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import pytest

from infra.log.event_store import RecordedEvent
from services.cli import fleet
from services.cli.audit import reads

T0 = "2026-12-07T22:00:00+00:00"


def event(position: int, kind: str, identity: str | None = None, **data: Any) -> dict[str, Any]:
    return {"position": position, "recorded_at": T0, "aggregate": "task", "aggregate_id": "t1",
            "type": kind, "identity": identity, "data": data}


def long_task() -> list[dict[str, Any]]:
    """Submitted, placed on w1, 30 reports; w1 dies; moved to w2, 20 reports so far."""
    story = [event(1, "Submitted", "ci-bot"), event(2, "Assigned", agent_id="w1", attempt=1),
             event(3, "Accepted", "w1", agent_id="w1", attempt=1)]
    story += [event(4 + n, "Progressed", "w1", progress=n / 100) for n in range(30)]
    story += [event(40, "Reassigned", from_agent="w1", agent_id="w2", attempt=2,
                    reason="agent w1 dead"),
              event(41, "Accepted", "w2", agent_id="w2", attempt=2)]
    story += [event(42 + n, "Progressed", "w2", progress=0.05 * n) for n in range(20)]
    return story


class _Found:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body


class _Api:
    def __init__(self, history: list[dict[str, Any]]) -> None:
        self.history = history

    async def get(self, path: str, missing_ok: bool = False) -> _Found | None:
        if path.endswith("/history"):
            return _Found({"task_id": "t1", "events": self.history})
        return None  # finished long ago: only its history is left


class TestTaskStatus:
    async def test_a_long_tasks_beginning_and_move_stay_in_view(self, capsys) -> None:
        args = argparse.Namespace(task_id="t1", history=10, json=False)

        await fleet._task_status(_Api(long_task()), args)  # type: ignore[arg-type]

        rows = capsys.readouterr().out.split("event(s)")[1].splitlines()[3:]
        types = [row.split()[4] if not row.startswith("...") else "..." for row in rows]
        assert len(rows) <= 10
        assert types[0] == "Submitted" and "Reassigned" in types
        assert types[-1] == "Progressed" and types.count("Progressed") == 2

    async def test_a_run_of_progress_reports_is_one_row_with_its_percentage(
            self, capsys) -> None:
        args = argparse.Namespace(task_id="t1", history=20, json=False)

        await fleet._task_status(_Api(long_task()), args)  # type: ignore[arg-type]

        out = capsys.readouterr().out
        assert "history: 55 event(s), 7 row(s) with the progress reports folded" in out
        [first_run] = [line for line in out.splitlines() if " 33 " in f" {line} "]
        assert "progress=29% (the last of 30 reports)" in first_run
        assert "progress=95% (the last of 20 reports)" in out
        assert "..." not in out

    @pytest.mark.parametrize("rows", [1, 2, 3])
    def test_few_rows_still_end_with_the_latest(self, rows: int) -> None:
        shown = fleet._history(long_task(), rows).splitlines()[4:]
        assert len(shown) == rows and shown[-1].split()[0] == "61"

    async def test_json_gives_the_last_events_as_they_are(self, capsys) -> None:
        args = argparse.Namespace(task_id="t1", history=3, json=True)

        await fleet._task_status(_Api(long_task()), args)  # type: ignore[arg-type]

        shown = orjson.loads(capsys.readouterr().out)["history"]
        assert [e["position"] for e in shown] == [59, 60, 61]


def recorded(position: int, name: str, event_id: str, causation_id: str | None,
             identity: str | None) -> RecordedEvent:
    return RecordedEvent(position, f"orch.events.agent.a{position}", "agent", "w1", name,
                         event_id, causation_id, causation_id,
                         datetime(2026, 12, 7, tzinfo=UTC), "topic", 1, b"{}",
                         cast(Any, None), identity=identity)


class TestEvents:
    def test_each_row_says_who_and_which_event_caused_it(self) -> None:
        seen = reads._Seen()
        rows = [reads._row(e, seen) for e in (
            recorded(5, "Registered", "e5", "cmd-AbCdEfGhIjKlMnOpQrStUv", "w1"),
            recorded(8, "DeclaredDead", "e8", "cmd-ZyXwVuTsRqPoNmLkJiHgFe", "orchestrator"),
            recorded(9, "Reassigned", "e9", "e8", "orchestrator"),
            recorded(12, "Submitted", "e12", "req-42", "ci-bot"))]

        by_and_cause = [(row[reads.EVENT_COLUMNS.index("by")],
                         row[reads.EVENT_COLUMNS.index("caused_by")]) for row in rows]
        assert by_and_cause == [("w1", ""), ("orchestrator", ""),
                                ("orchestrator", "8 DeclaredDead"), ("ci-bot", "req-42")]
