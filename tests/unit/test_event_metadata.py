"""The event store reads a message's position and time from its reply subject as
nats-py's own Metadata does, in both forms of the subject."""

from __future__ import annotations

import pytest
from nats.aio.msg import Msg

from infra.log.event_store import position_and_time

REPLIES = [
    pytest.param("$JS.ACK.ORCH_EVENTS.c1.1.4711.12.1764052800123456789.0", id="v1"),
    pytest.param("$JS.ACK._.ACCHASH.ORCH_EVENTS.c1.1.4711.12.1764052800123456789.0.tok",
                 id="v2-no-domain"),
    pytest.param("$JS.ACK.hub.ACCHASH.ORCH_EVENTS.c1.3.99.12.1700000000000000001.5",
                 id="v2-domain"),
]


@pytest.mark.parametrize("reply", REPLIES)
def testposition_and_time_agree_with_nats_py(reply: str) -> None:
    metadata = Msg.Metadata._from_reply(reply)
    assert position_and_time(reply) == (metadata.sequence.stream, metadata.timestamp)
