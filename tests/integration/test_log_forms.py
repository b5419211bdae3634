"""Events written before the log's compact forms (a header each, long bodies, UUID ids,
Nats-Expected-Stream) still read as they did, through the orchestrator's event store and
an auditor's OrchestratorLog, beside the same lifecycle written now."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from eventsourcing.persistence import Notification
from nats.aio.client import Client

from bench.scenarios.tasks import stored_bytes
from infra.caller import current_identity, decided_by_orchestrator
from infra.eventsourcing_jetstream import OrchestratorLog, provenance_of
from infra.log.event_store import EventStore, RecordedEvent
from infra.log.format import event_headers
from infra.log.format.codec import create_mapper
from infra.log.streams import provision
from infra.names import TASK, Header, Names
from infra.settings import Settings
from tests.unit.test_log_forms import lifecycle, long_form, previous_form

# Who caused each event of the lifecycle, as the orchestrator records it: (identity,
# causation, correlation). An agent's accept and complete carry no correlation id.
CAUSES = [("bench", "cmd-1", "cmd-1"), ("orchestrator", "cmd-1", "cmd-1"),
          ("w0", "cmd-2", None), ("w0", "cmd-3", None)]


async def write_old_form(nc: Client, names: Names, events: list[Any]) -> list[str]:
    """A lifecycle as the orchestrator wrote it before; returns the event ids."""
    js, ids = nc.jetstream(), []
    expected = 0
    task_id = events[0].originator_id
    for version, (domain_event, (identity, cause, correlation)) in enumerate(
            zip(events, CAUSES, strict=True), 1):
        event_id = str(uuid.uuid4())
        headers: dict[str, Any] = {Header.MSG_ID: event_id, Header.VERSION: str(version),
                   Header.IDENTITY: identity, Header.CAUSATION_ID: cause,
                   Header.EXPECTED_LAST_SUBJECT_SEQ: str(expected),
                   Header.EXPECTED_LAST_SUBJECT_SEQ_SUBJECT: names.aggregate_events(
                       TASK, task_id)}
        if correlation is not None:
            headers[Header.CORRELATION_ID] = correlation
        subject = names.event(TASK, task_id, type(domain_event).__name__)
        ack = await js.publish(subject, long_form(domain_event), headers=headers,
                               stream=names.events_stream)
        expected = ack.seq
        ids.append(event_id)
    return ids


async def write_previous_form(nc: Client, names: Names, events: list[Any]) -> None:
    """A lifecycle as the orchestrator wrote it before rows: one `Orch` header naming the
    orchestrator in full, the state an object of every field."""
    js = nc.jetstream()
    expected = 0
    task_id = events[0].originator_id
    for version, (domain_event, (identity, cause, correlation)) in enumerate(
            zip(events, CAUSES, strict=True), 1):
        fields = [version, identity, cause] + ([True] if correlation else [])
        headers: dict[str, Any] = {
            Header.MSG_ID: event_headers.new_event_id(),
            Header.EVENT: orjson.dumps(fields).decode(),
            Header.EXPECTED_LAST_SUBJECT_SEQ: str(expected),
            Header.EXPECTED_LAST_SUBJECT_SEQ_SUBJECT: names.aggregate_events(TASK, task_id)}
        ack = await js.publish(names.event(TASK, task_id, type(domain_event).__name__),
                               previous_form(domain_event), headers=headers)
        expected = ack.seq


async def write_new_form(store: EventStore, task_id: str) -> None:
    """The same lifecycle as the orchestrator writes it now."""
    position = 0
    events = lifecycle(task_id)
    for (identity, cause, correlation), chunk in zip(
            [CAUSES[0], CAUSES[2], CAUSES[3]], [events[:2], events[2:3], events[3:]],
            strict=True):
        token = current_identity.set(identity)
        own = decided_by_orchestrator.set(frozenset({"Assigned"}))  # as a submit does
        try:
            positions = await store.append(TASK, chunk, position, cause, correlation)
        finally:
            decided_by_orchestrator.reset(own)
            current_identity.reset(token)
        position = positions[-1]


def seen(recorded: RecordedEvent) -> tuple[Any, ...]:
    """What a reader learns of an event, but for its id, position and time."""
    data = recorded.data()
    data.pop("task_id", None)
    data.pop("timestamp")
    return (recorded.name, recorded.identity, recorded.causation_id,
            recorded.correlation_id, data)


async def test_an_old_lifecycle_reads_as_the_same_one_written_now(
    nc: Client, names: Names, settings: Settings
) -> None:
    await provision(nc.jetstream(), names, heartbeat_history=10)
    store = EventStore(nc.jetstream(), names, create_mapper())
    originals = lifecycle("t-old")
    old_ids = await write_old_form(nc, names, originals)
    await write_previous_form(nc, names, lifecycle("t-previous"))
    await write_new_form(store, "t-new")

    old, new = await store.history(TASK, "t-old"), await store.history(TASK, "t-new")
    previous = await store.history(TASK, "t-previous")

    assert [seen(e) for e in old] == [seen(e) for e in new] == [seen(e) for e in previous]
    assert [e[0].data()["task_id"] for e in (old, previous, new)] == [
        "t-old", "t-previous", "t-new"]
    # Written now: rows, and the orchestrator named by a number.
    stored = await raw(nc, names, "t-new")
    assert all(m.data.startswith(b"[") for m in stored)
    assert [orjson.loads((m.headers or {})[Header.EVENT])[1] for m in stored] == [
        "bench", 0, "w0", "w0"]
    # The creation checks its own subject; the events after it the task's subjects.
    assert [Header.EXPECTED_LAST_SUBJECT_SEQ_SUBJECT in (m.headers or {}) for m in stored] == [
        False, True, True, True]
    assert [len((m.headers or {})[Header.MSG_ID]) for m in stored] == [16] * 4
    # The Assigned written with its submit: caused by the submit, not by the Submitted.
    assert new[1].causation_id == "cmd-1" and new[1].identity == "orchestrator"
    assert [e.event_id for e in old] == old_ids
    for recorded, original in zip(old, originals, strict=True):
        assert vars(recorded.event) == vars(original)
    assert sum(len(m.data) for m in await raw(nc, names, "t-new")) < sum(
        len(m.data) for m in await raw(nc, names, "t-old"))

    # An auditor's application reads both alike, with the same provenance.
    app = await asyncio.to_thread(OrchestratorLog, {
        "ORCH_NATS_URL": settings.nats_url or "", "ORCH_SUBJECT_PREFIX": names.prefix})
    try:
        notifications: list[Notification] = list(await asyncio.to_thread(
            app.recorder.select_notifications, start=None, limit=100))
        audited = [app.mapper.to_domain_event(n) for n in notifications]
    finally:
        app.close()
    by_task: dict[str, list[Any]] = {"t-old": [], "t-previous": [], "t-new": []}
    for domain_event in audited:
        by_task[domain_event.originator_id].append(domain_event)
    for recorded, domain_event in zip(
            old + previous + new, by_task["t-old"] + by_task["t-previous"] + by_task["t-new"],
            strict=True):
        provenance = provenance_of(domain_event)
        assert (provenance.position, provenance.event_id, provenance.causation_id,
                provenance.correlation_id, provenance.identity) == (
            recorded.position, recorded.event_id, recorded.causation_id,
            recorded.correlation_id, recorded.identity)
        assert vars(domain_event) | {"provenance": None} == vars(recorded.event) | {
            "provenance": None}


async def raw(nc: Client, names: Names, task_id: str) -> list[Any]:
    js = nc.jetstream()
    info = await js.stream_info(names.events_stream)
    messages = [await js.get_msg(names.events_stream, seq)
                for seq in range(1, info.state.last_seq + 1)]
    prefix = names.aggregate_events(TASK, task_id)[:-1]
    return [m for m in messages if (m.subject or "").startswith(prefix)]


async def test_the_benchmark_counts_the_bytes_as_jetstream_does(
    nc: Client, names: Names
) -> None:
    """bench/scenarios/tasks.py's per-message count, summed over a stream, is the
    server's own byte count: so its task-events-only figure is exact too."""
    await provision(nc.jetstream(), names, heartbeat_history=10)
    store = EventStore(nc.jetstream(), names, create_mapper())
    await write_old_form(nc, names, lifecycle("t-old"))
    await write_new_form(store, "t-ñ")  # a subject not all ASCII
    info = await nc.jetstream().stream_info(names.events_stream)

    counted = await stored_bytes(nc, names.events_stream, names.events_wildcard)

    assert counted == (info.state.bytes, info.state.messages)
    assert await stored_bytes(nc, names.events_stream, names.aggregate_events(
        TASK, "t-old")) < counted
