"""Data messages of an ordered JetStream push subscription handed straight to a function.

nats-py makes a Msg object of every message, puts it on the subscription's queue and
calls the callback from a task of its own: at 75,000 heartbeats a second that machinery
was about half of the orchestrator's time (py-spy, docs/performance.md). A subscription
given a direct handler (`deliver_directly`) has its data messages handed, in the
connection's read loop, to the handler as (subject, stream sequence, time, data,
headers), with
nats-py's own ordered-consumer bookkeeping done here as nats-py does it: the consumer
sequence checked (a gap recreates the consumer from the last stream sequence taken), the
consumer marked active, and the sequences tracked for flow control and idle heartbeats.
Anything else (status messages, and any message while the queue still holds some
delivered the usual way) goes through nats-py unchanged, in order.

The handler runs in the read loop: it must be quick, and it returns an awaitable only
when it has I/O to do (awaited there, in order). nats-py's private parts it needs are
reached through infra.bus.nats_internals.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg

from infra.bus import nats_internals

log = logging.getLogger(__name__)

# (subject, stream sequence, time stored, data, headers as nats-py parses them, or None)
# -> None, or an awaitable to await
DirectHandler = Callable[[bytes, int, datetime, bytes, dict[str, str] | None],
                         Awaitable[None] | None]

_ATTRIBUTE = "_orch_direct_handler"
_WHEN = "_orch_direct_when"
# A JetStream data message's reply subject; status messages (idle heartbeats, flow
# control) have none, or another.
_DATA_REPLY = b"$JS.ACK."
_HEADER_LINE = b"NATS/1.0\r\n"

# The tokens of a JetStream message's reply subject: $JS.ACK.<stream>.<consumer>.
# <delivered>.<sseq>.<cseq>.<ns>.<pending>, or with <domain>.<account hash> after $JS.ACK.
_V1_TOKENS, _V1_SEQUENCE, _V1_TIME = 9, 5, 7
_V2_SEQUENCE, _V2_TIME = Msg.Ack.StreamSeq, Msg.Ack.Timestamp


def position_and_time_of(tokens: list[str]) -> tuple[int, datetime]:
    """A JetStream message's stream sequence and time, from its reply subject's tokens."""
    if len(tokens) == _V1_TOKENS:
        sequence, nanos = tokens[_V1_SEQUENCE], tokens[_V1_TIME]
    else:
        sequence, nanos = tokens[_V2_SEQUENCE], tokens[_V2_TIME]
    return int(sequence), datetime.fromtimestamp(int(nanos) / 1e9, UTC)


def deliver_directly(subscription: Any, handler: DirectHandler,
                     when: Callable[[], bool] | None = None) -> None:
    """Hand the data messages of this ordered push subscription (as `js.subscribe`
    returned it) to `handler`, on a connection made with infra.bus.headers.Client; only
    while `when()` holds, if given (else they go to the subscription's callback, which
    may wait without holding up the connection's read loop). Messages that arrived
    before are taken the usual way first, and the direct way once all those are
    handled."""
    attach(nats_internals.subscription_of(subscription), handler, when)


def attach(sub: Any, handler: DirectHandler, when: Callable[[], bool] | None) -> None:
    setattr(sub, _ATTRIBUTE, handler)
    setattr(sub, _WHEN, when)


def handler_of(sub: Any, reply: bytes, headers: bytes | None) -> DirectHandler | None:
    """The direct handler for this message of a nats-py subscription: None unless the
    subscription has one, the message is a data message (not a status), its `when`
    holds, and nothing given the usual way still waits (messages are taken in order)."""
    handler: DirectHandler | None = getattr(sub, _ATTRIBUTE, None)
    if (handler is None or not reply.startswith(_DATA_REPLY)
            or (headers and not headers.startswith(_HEADER_LINE))  # a status line
            or nats_internals.queued(sub)):  # queued, or being handled
        return None
    when: Callable[[], bool] | None = getattr(sub, _WHEN, None)
    return handler if when is None or when() else None


async def deliver(sub: Any, handler: DirectHandler, subject: bytes, reply: bytes,
                  data: bytes, headers: dict[str, str] | None) -> None:
    """One data message of `sub`, as nats-py's ordered consumer would take it, to the
    handler."""
    reply_text = reply.decode()
    tokens = reply_text.split(".")
    reset = nats_internals.take_ordered(sub, reply_text, tokens)
    if reset is not None and await reset:
        return  # a message was missed: the consumer starts again after the last one taken
    sequence, at = position_and_time_of(tokens)
    try:
        pending = handler(subject, sequence, at, data, headers)
        if pending is not None:
            await pending
    except Exception:  # the read loop must go on: nats-py reports a callback's the same way
        log.exception("direct handler failed on %s", subject.decode(errors="replace"))
