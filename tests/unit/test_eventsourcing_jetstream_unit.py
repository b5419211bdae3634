"""Names of the JetStream persistence module's streams and subjects; its settings."""

from __future__ import annotations

import uuid

import pytest
from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment
from hypothesis import given
from hypothesis import strategies as st

from infra.eventsourcing_jetstream import JetStreamFactory
from infra.eventsourcing_jetstream.names import (
    LogNames,
    escape,
    parse_event_subject,
    unescape,
)


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching, `*` and `>` wildcards."""
    parts, tokens = pattern.split("."), subject.split(".")
    for i, part in enumerate(parts):
        if part == ">":
            return len(tokens) > i
        if i >= len(tokens) or (part != "*" and part != tokens[i]):
            return False
    return len(parts) == len(tokens)


@given(st.text())
def test_escaping_gives_one_valid_token_and_is_reversible(text: str) -> None:
    token = escape(text)
    assert token
    assert not any(ch in token for ch in ".*> \t\r\n/\\")
    assert token.isascii()
    assert unescape(token) == text


@given(st.text(), st.text())
def test_different_names_never_share_a_token(a: str, b: str) -> None:
    if a != b:
        assert escape(a) != escape(b)


def test_plain_names_stay_readable() -> None:
    assert escape("BankAccounts") == "BankAccounts"
    assert LogNames("BankAccounts").stream == "ES_BankAccounts"
    assert LogNames("Bank.Accounts").stream == "ES_Bank~2eAccounts"
    assert LogNames("").stream == "ES_~"


@given(st.one_of(st.uuids(), st.text()), st.integers(-5, 10**9))
def test_event_subjects_give_back_their_id_and_version(
    originator_id: uuid.UUID | str, version: int
) -> None:
    log = LogNames("App")
    subject = log.event_subject("events", originator_id, version)
    parsed_id, parsed_version = parse_event_subject(subject)
    assert parsed_id == originator_id
    assert type(parsed_id) is type(originator_id)
    assert parsed_version == version
    assert matches(log.sequence_filter("events", originator_id), subject)
    assert matches(log.purpose_filter("events"), subject)
    assert matches(log.stream_subjects[0], subject)
    assert not matches(log.purpose_filter("snapshots"), subject)


def test_a_uuid_and_its_string_are_different_sequences() -> None:
    log = LogNames("App")
    an_id = uuid.uuid4()
    assert log.event_subject("events", an_id, 1) != log.event_subject("events", an_id.hex, 1)
    assert not matches(log.sequence_filter("events", an_id.hex), log.event_subject(
        "events", an_id, 1
    ))


def test_tracking_subjects_are_not_notifications() -> None:
    log = LogNames("App")
    tracking = log.tracking_subject("Upstream.App")
    assert matches(log.stream_subjects[0], tracking)
    assert not matches(log.purpose_filter("events"), tracking)
    assert not matches(log.purpose_filter("tracking"), tracking)


def test_two_applications_never_overlap() -> None:
    one, other = LogNames("Dogs"), LogNames("Dogs.Cats")
    assert one.stream != other.stream
    assert not matches(one.stream_subjects[0], other.event_subject("events", "x", 1))
    assert not matches(other.stream_subjects[0], one.event_subject("events", "x", 1))


def test_the_module_is_found_and_needs_a_nats_url() -> None:
    env = Environment("App", {"PERSISTENCE_MODULE": "infra.eventsourcing_jetstream"})
    with pytest.raises(OSError, match="ORCH_NATS_URL"):
        InfrastructureFactory.construct(env)


def test_replicas_must_be_a_number() -> None:
    env = Environment("App", {"ORCH_NATS_URL": "nats://127.0.0.1:1", "ORCH_ES_REPLICAS": "x"})
    with pytest.raises(OSError, match="ORCH_ES_REPLICAS"):
        JetStreamFactory(env)
