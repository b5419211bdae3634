"""The forms the log stores events in: the compact ones written now, and the long ones of
events written before, which read back as the same events with the same provenance."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import nats.errors
import orjson
import pytest
from eventsourcing.persistence import MapperDeserialisationError, StoredEvent
from eventsourcing.utils import get_topic
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.msg import Msg

from bench.scenarios.tasks import LIFECYCLE_BODIES
from domain.agents.agent import Agent
from domain.tasks.placement import Strategy
from domain.tasks.task import Task, fingerprint
from infra.log.event_store import RecordedEvent
from infra.log.format import event_headers
from infra.log.format.codec import OrjsonTranscoder, create_mapper
from infra.log.format.forms import (
    EPOCH,
    REQUIRED,
    ROW_FORMS,
    compact_state,
    expand_state,
    state_row,
    time_of,
)
from infra.log.group_commit import _stored
from infra.names import Header

CONSIDERED = [
    {"agent_id": "w0", "load": 0, "capacity": 600, "status": "healthy"},
    {"agent_id": "w1", "load": 3, "capacity": 4, "status": "draining"},
]


def lifecycle(task_id: str = "t1") -> list[Any]:
    """A task's events: submitted, assigned (with its candidates), accepted, completed."""
    task = Task(task_id, "k", {"x": [1, 2]}, ["gpu"], 0, 3, 300.0,
                fingerprint({"task_id": "t1", "kind": "k"}))
    task.assign("w0", 1, "ab12", "least_loaded", CONSIDERED, now=0.0)
    token = task.token
    assert token is not None
    task.accept(token)
    task.complete(token, {"ok": True})
    return list(task.collect_events())


def long_form(domain_event: Any) -> bytes:
    """The state as the orchestrator wrote it before the compact forms: eventsourcing's
    mapper with the generic transcoder."""
    state = dict(vars(domain_event))
    del state["originator_id"], state["originator_version"]
    return OrjsonTranscoder().encode(state)


def previous_form(domain_event: Any) -> bytes:
    """The state as the orchestrator wrote it before rows: an object of every field, with
    the compact timestamp, fingerprint and candidate rows of three or four values, the
    token as it is."""
    state = dict(vars(domain_event))
    del state["originator_id"], state["originator_version"]
    token, considered = state.get("token"), state.get("considered")
    moment = state["timestamp"]
    compact_state(state, get_topic(type(domain_event)))
    state["timestamp"] = (moment - EPOCH) // timedelta(microseconds=1)  # an integer then
    if token is not None:
        state["token"] = token
    if considered:
        state["considered"] = [
            [c["agent_id"], c["load"], c["capacity"]]
            + ([c["status"]] if c["status"] != "healthy" else []) for c in considered]
    return orjson.dumps(state)


class TestCompactState:
    def test_every_event_of_a_lifecycle_round_trips(self) -> None:
        mapper = create_mapper()
        for domain_event in lifecycle():
            copy = mapper.to_domain_event(mapper.to_stored_event(domain_event))
            assert type(copy) is type(domain_event)
            assert vars(copy) == vars(domain_event)

    def test_the_stored_forms_are_the_compact_ones(self) -> None:
        submitted, assigned, accepted, completed = lifecycle()
        mapper = create_mapper()
        # Rows of the class's columns: no keys, no task_id (the subject's), no
        # originator_topic, the trailing defaults left out.
        body = orjson.loads(mapper.to_stored_event(submitted).state)
        timestamp, kind, digest, payload, requires = body
        assert type(timestamp) is str and len(timestamp) == 9
        assert EPOCH + time_of(timestamp) * timedelta(microseconds=1) == submitted.timestamp
        assert (kind, payload, requires) == ("k", {"x": [1, 2]}, ["gpu"])
        assert len(digest) == 43
        body = orjson.loads(mapper.to_stored_event(assigned).state)
        assert body[1:] == ["w0", "ab12", [["w0", 0, 600], ["w1", 3, 4, "draining"]]]
        assert orjson.loads(mapper.to_stored_event(accepted).state)[1:] == ["ab12"]
        assert orjson.loads(mapper.to_stored_event(completed).state)[1:] == [
            "ab12", "w0", {"ok": True}]

    def test_the_long_form_reads_as_the_same_event(self) -> None:
        mapper = create_mapper()
        for domain_event in lifecycle():
            stored = mapper.to_stored_event(domain_event)
            old = type(stored)(stored.originator_id, stored.originator_version, stored.topic,
                               long_form(domain_event))
            assert len(old.state) > len(stored.state)
            assert vars(mapper.to_domain_event(old)) == vars(domain_event)

    def test_the_timestamp_keeps_every_microsecond(self) -> None:
        for moment in (datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
                       datetime(2026, 11, 30, 5, 5, 26, 323_781, tzinfo=UTC),
                       datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)):
            state = expand_state(orjson.loads(orjson.dumps(
                compact_state({"timestamp": moment}, "m:A.E"))))
            assert state["timestamp"] == moment and state["timestamp"].tzinfo is UTC

    def test_a_timestamp_in_another_zone_keeps_the_long_form(self) -> None:
        moment = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2)))
        assert compact_state({"timestamp": moment}, "m:A.E")["timestamp"] is moment

    @pytest.mark.parametrize("considered", [
        [{"agent_id": "a", "incarnation": 1, "load": 0, "capacity": 2, "status": "healthy"}],
        [{"load": 0, "agent_id": "a", "capacity": 2, "status": "healthy"}],  # key order
        ["a"],
        [],
    ])
    def test_candidates_of_another_shape_are_kept_as_they_are(
        self, considered: list[Any]
    ) -> None:
        assert compact_state({"considered": considered}, "m:A.E")["considered"] is considered

    @pytest.mark.parametrize("value", ["fp", "A" * 64, "g" * 64, "a" * 63])
    def test_a_fingerprint_that_is_no_sha256_hex_is_kept(self, value: str) -> None:
        assert compact_state({"fingerprint": value}, "m:A.E")["fingerprint"] == value

    def test_the_originator_topic_is_kept_when_it_is_not_the_enclosing_class(self) -> None:
        state = {"originator_topic": "domain.other:Other"}
        assert compact_state(dict(state), "domain.task:Task.Submitted") == state

    def test_an_agent_registration_round_trips(self) -> None:
        mapper = create_mapper()
        [registered] = Agent("a1", ["cpu"], 2, {}, []).collect_events()
        copy: Any = mapper.to_domain_event(mapper.to_stored_event(registered))
        assert vars(copy) == vars(registered)
        assert copy.mutate(None).id == "a1"


class TestEventHeaders:
    @pytest.mark.parametrize(("fields", "packed"), [
        ((1, "bench", "cmd-1", "cmd-1"), '[1,"bench","cmd-1",true]'),
        ((3, "w0", "cmd-2", None), '[3,"w0","cmd-2"]'),
        ((2, "orchestrator", "hb-7", "ev-1"), '[2,0,"hb-7","ev-1"]'),
        ((5, "orchestrator", None, None), '[5,0]'),
        ((1, None, 'a "quoted" id\\', None), '[1,null,"a \\"quoted\\" id\\\\"]'),
    ])
    def test_packs_and_reads_back(self, fields: tuple[Any, ...], packed: str) -> None:
        assert event_headers.pack(*fields) == packed
        assert event_headers.read({Header.EVENT: packed}) == fields

    def test_an_empty_id_is_written_as_none(self) -> None:
        packed = event_headers.pack(1, "a1", "", "")
        assert packed == '[1,"a1"]'
        assert event_headers.read({Header.EVENT: packed}) == (1, "a1", None, None)

    @pytest.mark.parametrize("old", [
        # A submit, and an agent's accept (no correlation id then: None, as before).
        {Header.VERSION: "1", Header.IDENTITY: "bench", Header.CAUSATION_ID: "cmd-1",
         Header.CORRELATION_ID: "cmd-1"},
        {Header.VERSION: "3", Header.IDENTITY: "w0", Header.CAUSATION_ID: "cmd-2"},
        {Header.VERSION: "2"},  # before identities were recorded
    ])
    def test_the_header_each_of_events_written_before_reads_the_same(
        self, old: dict[str, str]
    ) -> None:
        fields = event_headers.read(old)
        assert fields == (int(old[Header.VERSION]), old.get(Header.IDENTITY),
                          old.get(Header.CAUSATION_ID), old.get(Header.CORRELATION_ID))
        assert event_headers.read({Header.EVENT: event_headers.pack(*fields)}) == fields

    @pytest.mark.parametrize("packed", ['[2,"orchestrator","cmd-1",true]', '[5,"orchestrator"]'])
    def test_the_orchestrators_name_written_before_reads_the_same(self, packed: str) -> None:
        assert event_headers.read({Header.EVENT: packed}).identity == "orchestrator"

    def test_only_the_number_0_is_the_orchestrator(self) -> None:
        assert event_headers.read({Header.EVENT: '[1,"0"]'}).identity == "0"

    @pytest.mark.parametrize(("size", "length"), [(16, 22), (event_headers.EVENT_ID_BYTES, 16)])
    def test_ids_are_url_safe_characters_and_distinct(self, size: int, length: int) -> None:
        """Request ids 22 characters (128 bits), event ids 16 (96 bits)."""
        ids = {event_headers.new_event_id(size) for _ in range(1000)}
        assert len(ids) == 1000
        assert all(len(i) == length and i.replace("-", "").replace("_", "").isalnum()
                   for i in ids)
        assert len(event_headers.new_event_id()) == 22


class TestTheStreamIsCheckedInTheAnswer:
    """Appends carry no Nats-Expected-Stream (stored with every event): the group
    commit checks the stream the server's answer names instead."""

    def answer(self, body: dict[str, Any]) -> Msg:
        return Msg(_client=None, subject="_INBOX.x", data=orjson.dumps(body))  # type: ignore[arg-type]

    def test_the_events_stream_answering_gives_the_sequence(self) -> None:
        assert _stored(self.answer({"stream": "ORCH_EVENTS", "seq": 7}), "ORCH_EVENTS") == 7

    def test_another_stream_answering_is_an_error(self) -> None:
        with pytest.raises(nats.errors.Error, match="OTHER"):
            _stored(self.answer({"stream": "OTHER", "seq": 7}), "ORCH_EVENTS")


TOKEN = "0ccb8985832ec9b9"  # as services.commands.tasks.new_token makes them


def every_task_event() -> list[Any]:
    """Events of every class of the Task aggregate, some with values other than the
    defaults their rows leave out."""
    a = Task("ta", "k", None, [], 0, 3, 300.0, fingerprint({"task_id": "ta", "kind": "k"}))
    a.assign("w0", 1, "1111111111111111", "least_loaded", CONSIDERED, now=0.0)
    a.reassign("w1", 2, "2222222222222222", "w0 died", "round_robin", CONSIDERED)
    a.requeue("no agent")
    a.assign("w2", 1, "3333333333333333", "least_loaded", CONSIDERED, now=0.0)
    a.accept("3333333333333333")
    a.report_progress("3333333333333333", 0.5)
    a.fail("3333333333333333", "boom", True, now=10.0, backoff_base=1.0, backoff_cap=8.0)
    a.assign("w0", 3, TOKEN, "least_loaded", CONSIDERED, now=20.0)
    a.accept(TOKEN)
    a.complete(TOKEN, [1, "two"])
    a.record_stale("1111111111111111", "complete", "not the current assignment")
    b = Task("tb", "k2", {"n": 1}, ["gpu"], 5, 1, 30.0, "not-a-digest")
    b.assign("w0", 1, "agent-chosen_token", "bin_pack", [], now=0.0)
    b.accept("agent-chosen_token")
    b.fail("agent-chosen_token", "bad input", False, now=1.0, backoff_base=1.0,
           backoff_cap=8.0)
    c = Task("tc", "k", None, [], 0, 3, 300, "x")  # an int timeout: written, not a default
    c.cancel("by request")
    # Unaccepted assignments: counted failures on the moves, and the end they lead to.
    d = Task("td", "k", None, [], 0, 3, 300.0, "x")
    d.assign("w0", 1, "4444444444444444", "least_loaded", CONSIDERED, now=0.0)
    d.reassign("w1", 1, "5555555555555555", "accept_timeout", "least_loaded", CONSIDERED)
    d.requeue("accept_timeout")
    d.assign("w0", 1, "6666666666666666", "least_loaded", CONSIDERED, now=0.0)
    d.requeue("accept_timeout")
    return [*a.collect_events(), *b.collect_events(), *c.collect_events(),
            *d.collect_events()]


def own_fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} - {
        "originator_id", "originator_version", "originator_topic"}


class TestRows:
    def test_every_task_event_is_a_row_and_reads_back_the_same(self) -> None:
        mapper = create_mapper()
        events = every_task_event()
        assert {type(e).__name__ for e in events} == task_event_names()
        for domain_event in events:
            stored = mapper.to_stored_event(domain_event)
            assert stored.state.startswith(b"["), type(domain_event).__name__
            copy = mapper.to_domain_event(stored)
            assert type(copy) is type(domain_event)
            assert vars(copy) == vars(domain_event)

    def test_every_task_event_class_has_a_row_of_its_own_fields(self) -> None:
        for name in task_event_names():
            value = getattr(Task, name)
            form = ROW_FORMS[f"domain.task:Task.{name}"]
            columns = [column for column, _ in form.columns]
            assert len(set(columns)) == len(columns)
            assert set(columns) | set(form.from_subject) == own_fields(value), name

    def test_the_row_forms_never_change(self) -> None:
        # A copy of the log's format: events written with these are stored forever. A
        # changed class needs a new form (docs/protocol.md, Events), not an edit here.
        r = REQUIRED
        assert {topic.removeprefix("domain.task:Task."): (form.columns, form.from_subject)
                for topic, form in ROW_FORMS.items()} == {
            "Submitted": ((("timestamp", r), ("kind", r), ("fingerprint", r),
                           ("payload", None), ("requires", []), ("priority", 0),
                           ("max_attempts", 3), ("timeout_s", 300.0),
                           ("submitted_by", ""), ("not_before", 0.0),
                           ("concurrency_key", ""), ("fairness_key", ""),
                           ("selector", None), ("prefer", None)), ("task_id",)),
            "Assigned": ((("timestamp", r), ("agent_id", r), ("token", r),
                          ("considered", r), ("strategy", "least_loaded"),
                          ("incarnation", 1), ("attempt", 1)), ()),
            "Reassigned": ((("timestamp", r), ("from_agent", r), ("agent_id", r),
                            ("token", r), ("attempt", r), ("reason", r), ("considered", r),
                            ("strategy", "least_loaded"), ("incarnation", 1),
                            ("failures", None)), ()),
            "Requeued": ((("timestamp", r), ("from_agent", r), ("reason", r),
                          ("failures", None)), ()),
            "Accepted": ((("timestamp", r), ("token", r), ("attempt", 1)), ()),
            "Progressed": ((("timestamp", r), ("token", r), ("progress", r)), ()),
            "Completed": ((("timestamp", r), ("token", r), ("agent_id", r),
                           ("result", None), ("attempt", 1)), ()),
            "Failed": ((("timestamp", r), ("token", r), ("agent_id", r), ("error", r),
                        ("failures", r), ("retry_in_s", r), ("retry_at", r),
                        ("retryable", True), ("attempt", 1)), ()),
            "DeadLettered": ((("timestamp", r), ("token", r), ("agent_id", r),
                              ("error", r), ("failures", r), ("retryable", True),
                              ("attempt", 1), ("reason", None)), ()),
            "Cancelled": ((("timestamp", r), ("reason", r), ("agent_id", r), ("was", r)),
                          ()),
            "StaleResultRefused": ((("timestamp", r), ("token", r), ("action", r),
                                    ("reason", r), ("current_attempt", r)), ()),
        }

    def test_a_lifecycle_with_the_defaults_is_written_as_the_benchmark_publishes_it(
        self
    ) -> None:
        mapper = create_mapper()
        written = [mapper.to_stored_event(mapper.to_domain_event(
                       StoredEvent("t1", version, f"domain.task:Task.{name}", body))).state
                   for version, (body, name) in enumerate(zip(
                       PREVIOUS_BODIES, ["Submitted", "Assigned", "Accepted", "Completed"],
                       strict=True), 1)]
        assert tuple(written) == LIFECYCLE_BODIES

    def test_every_object_written_before_rows_reads_as_the_same_event(self) -> None:
        mapper = create_mapper()
        for domain_event in every_task_event():
            stored = mapper.to_stored_event(domain_event)
            before = StoredEvent(stored.originator_id, stored.originator_version,
                                 stored.topic, previous_form(domain_event))
            assert before.state.startswith(b"{")
            assert vars(mapper.to_domain_event(before)) == vars(domain_event)

    def test_the_objects_written_before_rows_read_as_the_same_events(self) -> None:
        mapper = create_mapper()
        for body, name in zip(PREVIOUS_BODIES,
                              ["Submitted", "Assigned", "Accepted", "Completed"], strict=True):
            before = StoredEvent("t1", 1, f"domain.task:Task.{name}", body)
            domain_event = mapper.to_domain_event(before)
            now = mapper.to_stored_event(domain_event)
            assert now.state.startswith(b"[") and len(now.state) < len(body)
            assert vars(mapper.to_domain_event(now)) == vars(domain_event)
        submitted = vars(mapper.to_domain_event(
            StoredEvent("t1", 1, "domain.task:Task.Submitted", LIFECYCLE_BODIES[0])))
        assert (submitted["task_id"], submitted["payload"], submitted["requires"],
                submitted["priority"], submitted["max_attempts"], submitted["timeout_s"]) == (
            "t1", None, [], 0, 3, 300.0)
        assert type(submitted["timeout_s"]) is float
        assigned = vars(mapper.to_domain_event(
            StoredEvent("t1", 2, "domain.task:Task.Assigned", LIFECYCLE_BODIES[1])))
        assert (assigned["token"], assigned["strategy"], assigned["incarnation"],
                assigned["attempt"]) == ("b954a4b16860307a", "least_loaded", 1, 1)
        assert assigned["considered"][1] == {
            "agent_id": "w1", "load": 0, "capacity": 10, "status": "healthy"}

    @pytest.mark.parametrize(("field", "value"), [
        ("timeout_s", 300), ("priority", False), ("max_attempts", 3.0), ("requires", ())])
    def test_a_value_of_another_type_than_the_default_is_written(
        self, field: str, value: Any
    ) -> None:
        state = submitted_state() | {field: value}
        row = written(state, "t1")
        assert isinstance(row, list) and value in row
        back = expand_state(orjson.loads(orjson.dumps(row)), "domain.task:Task.Submitted",
                            "t1")
        assert type(back[field]) is (list if field == "requires" else type(value))

    def test_the_default_strategy_is_left_out_as_placement_names_it(self) -> None:
        task = Task("t1", "k", None, [], 0, 3, 300.0, "x")
        task.assign("w0", 1, TOKEN, Strategy.LEAST_LOADED, CONSIDERED, now=0.0)
        _, assigned = task.collect_events()
        mapper = create_mapper()
        stored = mapper.to_stored_event(assigned)
        assert len(orjson.loads(stored.state)) == 4  # no strategy, incarnation, attempt
        copy: Any = mapper.to_domain_event(stored)
        assert copy.strategy == "least_loaded" and type(copy.strategy) is str

    def test_each_row_gets_its_own_default_list(self) -> None:
        body = LIFECYCLE_BODIES[0]
        first = expand_state(orjson.loads(body), "domain.task:Task.Submitted", "t1")
        first["requires"].append("gpu")
        second = expand_state(orjson.loads(body), "domain.task:Task.Submitted", "t1")
        assert second["requires"] == []

    @pytest.mark.parametrize("change", [
        {"task_id": "another"},  # not the subject's id
        {"extra": 1},  # a field the row has no column for
        {"class_version": 2},  # a later version of the class: upcast from its object
        {"originator_topic": "domain.other:Other"},
    ])
    def test_a_state_of_another_shape_is_an_object(self, change: dict[str, Any]) -> None:
        state = submitted_state() | change
        body = written(state, "t1")
        assert isinstance(body, dict)
        assert body.keys() == {key for key, value in state.items()
                                  if (key, value) != ("originator_topic", "domain.task:Task")}

    def test_a_state_missing_a_column_is_an_object(self) -> None:
        state = submitted_state()
        del state["priority"]
        assert isinstance(written(state, "t1"), dict)

    def test_a_submission_is_an_object_without_its_aggregate_id(self) -> None:
        state = submitted_state()
        assert isinstance(written(state, None), dict)

    @pytest.mark.parametrize(("topic", "body"), [
        ("domain.task:Task.Accepted", b'[1,"a",2,3]'),  # more values than columns
        ("domain.task:Task.Accepted", b"[1]"),  # a column without a default missing
        ("domain.agent:Agent.Registered", b'[1,"a"]'),  # a class without a row form
        ("domain.task:Task.Accepted", b'"text"'),
    ])
    def test_a_row_that_does_not_fit_its_class_is_refused(self, topic: str,
                                                          body: bytes) -> None:
        with pytest.raises(MapperDeserialisationError):
            create_mapper().to_domain_event(StoredEvent("t1", 1, topic, body))

    def test_the_event_store_reads_a_row_as_the_class_orders_its_fields(self) -> None:
        mapper = create_mapper()
        for domain_event in every_task_event():
            stored = mapper.to_stored_event(domain_event)
            recorded = RecordedEvent(1, "orch.evt.task.x.y", "task", str(stored.originator_id),
                                     type(domain_event).__name__, "e1", None, None,
                                     datetime.now(UTC), stored.topic,
                                     stored.originator_version, stored.state, mapper)
            expected = {key: value for key, value in vars(domain_event).items()
                        if key not in ("originator_id", "originator_version",
                                       "originator_topic")}
            data = recorded.data()
            assert data.pop("version") == domain_event.originator_version
            assert list(data.items()) == list(expected.items())


def task_event_names() -> set[str]:
    """The Task aggregate's own event classes (not those every aggregate has: `Created`,
    and `CarriedForward`, whose state is the aggregate's, an object)."""
    return {name for name, value in vars(Task).items()
            if isinstance(value, type) and issubclass(value, Task.Event)
            and value is not Task.Event} - {"Created", "CarriedForward"}


def written(state: dict[str, Any], task_id: str | None) -> dict[str, Any] | list[Any]:
    """A Submitted state as the mapper writes it: a row, or else an object."""
    topic = "domain.task:Task.Submitted"
    compacted = compact_state(dict(state), topic)
    row = state_row(compacted, topic, task_id)
    return compacted if row is None else row


def submitted_state() -> dict[str, Any]:
    return {"timestamp": datetime(2026, 1, 1, tzinfo=UTC), "originator_topic": "domain.task:Task",
            "task_id": "t1", "kind": "k", "payload": None, "requires": [], "priority": 0,
            "max_attempts": 3, "timeout_s": 300.0, "fingerprint": "f" * 64,
            "submitted_by": "", "not_before": 0.0, "concurrency_key": "",
            "fairness_key": "", "selector": None, "prefer": None}


# A lifecycle's events as the orchestrator wrote them before rows: objects with every field.
PREVIOUS_BODIES = (
    b'{"timestamp":1796017394378399,"task_id":"t1","kind":"k","payload":null,"requires":[],'
    b'"priority":0,"max_attempts":3,"timeout_s":300.0,'
    b'"fingerprint":"8yco9S0Bf0mKH8BJw3mmH29T6WFCAMUS5CXxKkZw--Y"}',
    b'{"timestamp":1796017394378502,"agent_id":"w0","incarnation":1,"attempt":1,'
    b'"token":"b954a4b16860307a","strategy":"least_loaded","considered":[["w0",0,10],'
    b'["w1",0,10]]}',
    b'{"timestamp":1796017394380686,"token":"b954a4b16860307a","attempt":1}',
    b'{"timestamp":1796017394381893,"token":"b954a4b16860307a","attempt":1,"agent_id":"w0",'
    b'"result":null}',
)


class TestTokens:
    def test_a_token_of_16_hex_digits_is_written_in_12_characters(self) -> None:
        state = compact_state({"token": TOKEN}, "m:A.E")
        assert len(state["token"]) == 12 and state["token"].startswith("~")
        assert expand_state(orjson.loads(orjson.dumps(state)))["token"] == TOKEN

    @pytest.mark.parametrize("token", [TOKEN.upper(), TOKEN[:-1], TOKEN + "0", "ab12",
                                       "agent-chosen_tok", "~DMuJhYMuyb"])
    def test_another_token_is_kept(self, token: str) -> None:
        state = compact_state({"token": token}, "m:A.E")
        assert state["token"] == token
        assert expand_state(dict(state))["token"] == token


class TestCandidateRows:
    def test_what_a_healthy_candidate_shares_with_the_row_before_is_left_out(self) -> None:
        considered = [
            {"agent_id": "w0", "load": 0, "capacity": 600, "status": "healthy"},
            {"agent_id": "w1", "load": 1, "capacity": 600, "status": "healthy"},
            {"agent_id": "w2", "load": 1, "capacity": 600, "status": "healthy"},
            {"agent_id": "w3", "load": 2, "capacity": 600, "status": "draining"},
            {"agent_id": "w4", "load": 2, "capacity": 600, "status": "healthy"},
            {"agent_id": "w5", "load": 3, "capacity": 600, "status": "healthy"},
            {"agent_id": "w6", "load": 3, "capacity": 8, "status": "healthy"},
            {"agent_id": "w7", "load": 3, "capacity": 8.0, "status": "healthy"},
            {"agent_id": "w8", "load": 3.0, "capacity": 8.0, "status": "healthy"},
            {"agent_id": "w9", "load": 3.0, "capacity": 8.0, "status": "healthy"},
        ]
        state = compact_state({"considered": [dict(c) for c in considered]}, "m:A.E")
        assert state["considered"] == [
            ["w0", 0, 600], ["w1", 1], "w2", ["w3", 2, 600, "draining"], "w4", ["w5", 3],
            ["w6", 3, 8], ["w7", 3, 8.0], ["w8", 3.0], "w9"]
        back = expand_state(orjson.loads(orjson.dumps(state)))["considered"]
        assert back == considered
        assert [(type(c["load"]), type(c["capacity"])) for c in back] == [
            (type(c["load"]), type(c["capacity"])) for c in considered]

    def test_the_first_candidate_is_a_whole_row(self) -> None:
        considered = [{"agent_id": "w0", "load": None, "capacity": None, "status": "healthy"}]
        state = compact_state({"considered": [dict(c) for c in considered]}, "m:A.E")
        assert state["considered"] == [["w0", None, None]]
        assert expand_state(state)["considered"] == considered

    def test_rows_written_before_read_as_before(self) -> None:
        state = expand_state({"considered": [["w0", 0, 10], ["w1", 0, 10],
                                             ["w2", 1, 4, "suspect"]]})
        assert [c["capacity"] for c in state["considered"]] == [10, 10, 4]
        assert state["considered"][2]["status"] == "suspect"


# Values as the orchestrator's events hold them: what JSON reads back as itself.
JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**53), 2**53)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                           max_leaves=8)
NUMBERS = st.integers(0, 1000) | st.sampled_from([0.0, 0.5, 8.0, 600.0])


class TestRowsForAnyValues:
    @given(payload=JSON_VALUES, requires=st.lists(st.sampled_from(["cpu", "gpu"]), max_size=2),
           priority=st.integers(-3, 3) | st.booleans(), max_attempts=st.integers(1, 4),
           timeout_s=st.sampled_from([300.0, 300, 30.0, 0.5]),
           digest=st.sampled_from([fingerprint({"a": 1}), "short", "F" * 64]))
    def test_a_submission_reads_back_the_same(self, payload: Any, requires: list[str],
                                              priority: int, max_attempts: int,
                                              timeout_s: float, digest: str) -> None:
        task = Task("t1", "k", payload, requires, priority, max_attempts, timeout_s, digest)
        [submitted] = task.collect_events()
        mapper = create_mapper()
        copy = mapper.to_domain_event(mapper.to_stored_event(submitted))
        assert vars(copy) == vars(submitted)
        assert {k: type(v) for k, v in vars(copy).items()} == {
            k: type(v) for k, v in vars(submitted).items()}

    @given(st.lists(st.tuples(st.sampled_from(["w0", "w1", "a-2"]), NUMBERS, NUMBERS,
                              st.sampled_from(["healthy", "healthy", "draining", "suspect"])),
                    min_size=1, max_size=6),
           st.integers(1, 3), st.integers(1, 3))
    def test_a_placement_reads_back_the_same(self, candidates: list[tuple[Any, ...]],
                                             incarnation: int, attempt: int) -> None:
        considered = [dict(zip(("agent_id", "load", "capacity", "status"), c, strict=True))
                      for c in candidates]
        task = Task("t1", "k", None, [], 0, 3, 300.0, "x")
        task.attempt = attempt - 1
        task.assign("w0", incarnation, TOKEN, "least_loaded", considered, now=0.0)
        _, assigned = task.collect_events()
        mapper = create_mapper()
        copy: Any = mapper.to_domain_event(mapper.to_stored_event(assigned))
        assert vars(copy) == vars(assigned)
        assert [(type(c["load"]), type(c["capacity"])) for c in copy.considered] == [
            (type(c["load"]), type(c["capacity"])) for c in considered]
