"""The quicker header parser gives what nats-py's own gives, for any header block."""

from __future__ import annotations

import inspect

import nats.aio.client
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.bus import headers
from infra.bus.headers import Client, parse_header_lines

nats_py = nats.aio.client.Client._parse_header_lines

EVENT = (b"Nats-Msg-Id: SJ2b-R-HRA2G2KZtpLJQmg\r\n"
         b"Nats-Expected-Last-Subject-Sequence-Subject: orch.evt.task.t1.>\r\n"
         b'Orch: [1,"bench","cmd-59f65dfb",true]\r\n'
         b"Nats-Expected-Last-Subject-Sequence: 0\r\n\r\n")

# Pieces that exercise every branch: separators, whitespace of both kinds (ASCII and the
# characters str.isspace adds, like \x1c), non-ASCII bytes, empty names and values.
PIECES = [b"Name", b"Nats-Msg-Id", b"Orch", b":", b": ", b" ", b"\t", b"\r\n", b"\x1c",
          b"\x0b", b"\xc3\xa9", b"\xff", b"value", b"[1,\"a\",true]", b"", b"a b", b"::"]


def test_an_events_headers() -> None:
    assert parse_header_lines(EVENT) == nats_py(EVENT) == {
        "Nats-Msg-Id": "SJ2b-R-HRA2G2KZtpLJQmg",
        "Nats-Expected-Last-Subject-Sequence-Subject": "orch.evt.task.t1.>",
        "Orch": '[1,"bench","cmd-59f65dfb",true]',
        "Nats-Expected-Last-Subject-Sequence": "0"}


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=24))
def test_blocks_made_of_tricky_pieces(pieces: list[bytes]) -> None:
    raw = b"".join(pieces)
    assert parse_header_lines(raw) == nats_py(raw)
    assert parse_header_lines(raw) == nats_py(raw)  # again, with its names remembered


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes(raw: bytes) -> None:
    assert parse_header_lines(raw) == nats_py(raw)


def test_names_remembered_are_bounded() -> None:
    for number in range(headers._NAMES_KEPT + 50):
        parse_header_lines(b"X-%d: v\r\n" % number)
    assert len(headers._names) <= headers._NAMES_KEPT


def test_nats_py_still_parses_through_the_method_the_client_replaces() -> None:
    # If nats-py stops calling self._parse_header_lines, the override silently stops
    # mattering: this says so.
    source = inspect.getsource(nats.aio.client.Client._process_headers)
    assert "self._parse_header_lines(" in source
    assert Client._parse_header_lines is parse_header_lines
