"""Deaths per agent per day, counted into SQLite from a live orchestrator's log.

The worked example of docs/auditor-projections.md: the library's ProjectionRunner runs
the projection over the read-only `OrchestratorLog`, and the view keeps each count and
its tracking record in one SQLite transaction, so a restart resumes where it left off
and no death is counted twice.

    ORCH_NATS_URL=nats://127.0.0.1:4222 ORCH_CREDENTIALS=auditor.nk \\
        .venv/bin/python -m services.audit.examples.deaths_per_day deaths.db
"""

from __future__ import annotations

import argparse
import os
import sys
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping
from datetime import date
from typing import Any, cast

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import InfrastructureFactory, Tracking, TrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.sqlite import SQLiteTrackingRecorder
from eventsourcing.system import NotificationLogReader
from eventsourcing.utils import Environment, get_topic

from domain.agents.agent import Agent
from infra.eventsourcing_jetstream import OrchestratorLog

# Made by the @event decorator at run time, so a type checker cannot see it on Agent.
DeclaredDead = cast(type[Any], vars(Agent)["DeclaredDead"])

Key = tuple[str, str]  # (agent id, UTC day as YYYY-MM-DD)


class DeathsView(TrackingRecorder, ABC):
    """Deaths per agent per day, and how far into the log they are counted."""

    @abstractmethod
    def count_death(self, agent_id: str, day: date, tracking: Tracking) -> None:
        """Add one death, recording the tracking with it, atomically."""

    @abstractmethod
    def deaths(self) -> dict[Key, int]:
        """Every count so far."""


class SQLiteDeathsView(DeathsView, SQLiteTrackingRecorder):
    """The counts in a table beside the library's tracking table, in one SQLite file."""

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS deaths_per_day (agent_id TEXT, day TEXT, "
            "deaths INTEGER NOT NULL, PRIMARY KEY (agent_id, day)) WITHOUT ROWID",
        ]

    def count_death(self, agent_id: str, day: date, tracking: Tracking) -> None:
        # One transaction: if the tracking record is refused (the death was counted
        # already), the count rolls back with it.
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                "INSERT INTO deaths_per_day VALUES (?, ?, 1) ON CONFLICT (agent_id, day) "
                "DO UPDATE SET deaths = deaths + 1",
                (agent_id, day.isoformat()),
            )
            self._insert_tracking(cursor, tracking)

    def deaths(self) -> dict[Key, int]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute("SELECT agent_id, day, deaths FROM deaths_per_day")
            return {(row["agent_id"], row["day"]): row["deaths"] for row in cursor.fetchall()}


class DeathsPerDay(Projection[DeathsView]):
    """Counts each DeclaredDead by its agent and the UTC day the orchestrator decided it."""

    name = "deaths_per_day"  # prefixes its settings, e.g. DEATHS_PER_DAY_SQLITE_DBNAME
    topics = (get_topic(DeclaredDead),)  # the log filters the rest out

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    @process_event.register(DeclaredDead)
    def declared_dead(self, domain_event: Any, tracking: Tracking) -> None:
        day = domain_event.timestamp.date()
        self.view.count_death(domain_event.originator_id, day, tracking)


def follow(env: Mapping[str, str]) -> ProjectionRunner[OrchestratorLog, DeathsView]:
    """Start counting, from where the SQLite file (SQLITE_DBNAME) left off; the runner
    follows the live log in threads of its own until stopped."""
    return ProjectionRunner(
        application_class=OrchestratorLog,
        projection_class=DeathsPerDay,
        view_class=SQLiteDeathsView,
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", **env},
    )


def open_view(env: Mapping[str, str]) -> SQLiteDeathsView:
    """The counts in the SQLite file, without following the log."""
    settings = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", **env}
    factory = InfrastructureFactory[SQLiteDeathsView].construct(
        Environment(DeathsPerDay.name, settings)
    )
    return factory.tracking_recorder(SQLiteDeathsView)


def replay(log: OrchestratorLog) -> Counter[Key]:
    """The counts from a full replay of the log: what the view must agree with."""
    counts: Counter[Key] = Counter()
    reader = NotificationLogReader(log.notification_log, section_size=500)
    for notifications in reader.select(start=1, topics=DeathsPerDay.topics):
        for notification in notifications:
            event: Any = log.mapper.to_domain_event(notification)
            counts[event.originator_id, event.timestamp.date().isoformat()] += 1
    return counts


def print_counts(counts: Mapping[Key, int]) -> None:
    for (agent_id, day), deaths in sorted(counts.items()):
        print(f"{day}  {agent_id}  {deaths}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", help="the SQLite file of the counts")
    parser.add_argument("--report", action="store_true",
                        help="print the counts in the file and exit, without following")
    args = parser.parse_args(argv)
    env = {**os.environ, "SQLITE_DBNAME": args.db}
    if args.report:
        print_counts(open_view(env).deaths())
        return 0
    runner = follow(env)
    print("following the orchestrator's log; Ctrl-C stops", file=sys.stderr)
    try:
        with runner:
            runner.run_forever()
    except KeyboardInterrupt:
        pass
    print_counts(runner.view.deaths())
    return 0


if __name__ == "__main__":
    sys.exit(main())
