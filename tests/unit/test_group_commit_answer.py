"""The answer to an atomic batch: a status message without a body (no stream leader, as
while a cluster node dies) or an unreadable one is a NATS error the group commit handles
by writing the batch one by one, never an exception that stops its writer."""

from __future__ import annotations

from typing import Any

import nats.errors
import pytest
from nats.aio.msg import Msg

from infra.log.group_commit import _answer


def message(data: bytes, headers: dict[str, str] | None = None) -> Msg:
    return Msg(_client=None, subject="_INBOX.x", data=data, headers=headers)  # type: ignore[arg-type]


def test_a_stored_batch_answers_its_last_sequence() -> None:
    assert _answer(message(b'{"stream": "S", "seq": 42, "batch": "b", "count": 3}'))[
        "seq"] == 42


def test_an_error_answer_is_returned_for_the_caller_to_raise() -> None:
    answer: dict[str, Any] = _answer(message(b'{"error": {"code": 400, "err_code": 10071}}'))
    assert answer["error"]["err_code"] == 10071


@pytest.mark.parametrize("reply", [
    pytest.param(message(b"", {"Status": "503"}), id="no-responders"),
    pytest.param(message(b""), id="empty"),
    pytest.param(message(b"not json"), id="unreadable"),
])
def test_no_answer_is_a_nats_error(reply: Msg) -> None:
    with pytest.raises(nats.errors.Error):
        _answer(reply)
