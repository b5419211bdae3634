"""The forms the log stores events in: the compact ones written now, and the long ones of
events written before, which read back as the same events with the same provenance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import nats.errors
import orjson
import pytest
from nats.aio.msg import Msg

from domain.agent import Agent
from domain.task import Task, fingerprint
from infra.log import event_headers
from infra.log.codec import OrjsonTranscoder, compact_state, create_mapper, expand_state
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


class TestCompactState:
    def test_every_event_of_a_lifecycle_round_trips(self) -> None:
        mapper = create_mapper()
        for domain_event in lifecycle():
            copy = mapper.to_domain_event(mapper.to_stored_event(domain_event))
            assert type(copy) is type(domain_event)
            assert vars(copy) == vars(domain_event)

    def test_the_stored_forms_are_the_compact_ones(self) -> None:
        submitted, assigned, *_ = lifecycle()
        mapper = create_mapper()
        body = orjson.loads(mapper.to_stored_event(submitted).state)
        assert type(body["timestamp"]) is int
        assert "originator_topic" not in body
        assert len(body["fingerprint"]) == 43
        body = orjson.loads(mapper.to_stored_event(assigned).state)
        assert body["considered"] == [["w0", 0, 600], ["w1", 3, 4, "draining"]]

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
        ((2, "orchestrator", "hb-7", "ev-1"), '[2,"orchestrator","hb-7","ev-1"]'),
        ((5, "orchestrator", None, None), '[5,"orchestrator"]'),
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

    def test_event_ids_are_22_url_safe_characters_and_distinct(self) -> None:
        ids = {event_headers.new_event_id() for _ in range(1000)}
        assert len(ids) == 1000
        assert all(len(i) == 22 and i.replace("-", "").replace("_", "").isalnum()
                   for i in ids)


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
