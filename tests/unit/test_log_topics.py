"""The log names aggregates and events by topics that never change: "domain.task:Task",
"domain.task:Task.Submitted", ... whatever module holds the classes now. Each aggregate
is named so (domain.base.named_in_the_log), the names are the ones infra.names leaves
out of an event's headers, and every name resolves to its class."""

from __future__ import annotations

import subprocess
import sys

import pytest
from eventsourcing.utils import get_topic, resolve_topic

from domain.base import StrIdEvent
from domain.tasks.task import Task
from infra import names
from infra.log.format.aggregates import BY_KIND


def test_every_kind_of_the_log_has_its_aggregate() -> None:
    assert set(BY_KIND) == set(names.AGGREGATE_TOPICS)


@pytest.mark.parametrize("kind", sorted(BY_KIND))
def test_an_aggregate_and_its_events_keep_the_logs_topics(kind: str) -> None:
    aggregate = BY_KIND[kind]
    topic = names.AGGREGATE_TOPICS[kind]
    assert get_topic(aggregate) == topic
    assert resolve_topic(topic) is aggregate
    events = {name: value for name, value in vars(aggregate).items()
              if isinstance(value, type) and issubclass(value, StrIdEvent)}
    assert {"Created", "CarriedForward"} <= set(events)
    for name, event_class in events.items():
        assert get_topic(event_class) == f"{topic}.{name}"
        assert resolve_topic(f"{topic}.{name}") is event_class


def test_the_names_stand_for_the_log_not_for_module_paths() -> None:
    # Today's modules happen to match; a module moved keeps its topics all the same.
    assert names.default_topic(names.TASK, "Submitted") == "domain.task:Task.Submitted"
    assert get_topic(vars(Task)["Submitted"]) == "domain.task:Task.Submitted"


def test_a_reader_that_loaded_only_the_codec_resolves_every_kinds_topics() -> None:
    # A fresh interpreter, as `orchestrator events --json` is: it had imported the task
    # and agent modules only, and an identity's event did not resolve (TopicError).
    topics = [f"{topic}.Created" for topic in names.AGGREGATE_TOPICS.values()]
    code = ("import sys\n"
            "from infra.log.format.codec import create_mapper\n"
            "from eventsourcing.utils import resolve_topic\n"
            "create_mapper()\n"
            f"for topic in {topics!r}:\n"
            "    resolve_topic(topic)\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
