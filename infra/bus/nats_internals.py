"""Every use this project makes of nats-py's private internals, in one place.

nats-py's public API hands each message to a callback through a `Msg` object and a queue,
and parses protocol frames and headers in ways that cost the orchestrator much of its time
at 75,000-100,000 heartbeats a second (docs/performance.md). The quicker paths
(infra.bus.parser, infra.bus.headers, infra.bus.direct, infra.log.direct_read) need some
of nats-py's private names; they reach them only through this module, so that a nats-py
release that moves them breaks here, and tests/unit/test_nats_internals.py says which.
pyproject.toml pins the supported range (nats-py 2.16.x); widen it only once that test
passes on the new release and the ordered-consumer code copied in `take_ordered` still
matches nats-py's `Client._process_msg`.

What it relies on, and the public-API fallback each has:

- `nats.aio.client.Client._process_msg(self, sid, subject, reply, data, headers)`, which
  the read loop (through the protocol parser) calls for every MSG and HMSG frame:
  `hook_client` puts a subclass's own in its place; `process_msg` is nats-py's. Fallback:
  no hook, every message taken by nats-py and handed to the subscription's callback (`cb=`
  of `nc.subscribe` / `js.subscribe`): correct, about twice the CPU.
- `Client._parse_header_lines(raw)` (a static method `Client._process_headers` calls):
  replaced by `hook_client` with a parser of identical output. Fallback: nats-py's own.
- `Client._ps`, the protocol parser the read loop feeds (`use_parser`), and
  `nats.protocol.parser.Parser` (its `buf`, `state` and `nc` attributes, `parse(data)`,
  `AWAITING_CONTROL_LINE`, `MAX_CONTROL_LINE_SIZE`), which infra.bus.parser extends.
  Fallback: nats-py's parser as it is.
- `Client._subs` (sid -> Subscription): the subscription a message is for
  (`subscription`).
- `Subscription._pending_queue._unfinished_tasks` (`queued`), `Subscription._received`,
  `Subscription._jsi`, and that a Subscription takes attributes of ours (it has no
  `__slots__`; infra.bus.direct keeps its handler there). Fallback: the callback path.
- `JetStreamContext.PushSubscription._sub`, the plain subscription under what
  `js.subscribe` returns (`subscription_of`).
- `JetStreamContext._JSI`, the ordered consumer's state (`_dseq`, `_sseq`, `_active`,
  `reset_ordered_consumer(sseq)`, `track_sequences(reply)`), and where
  `Client._process_msg` reads an ordered consumer's sequences in a reply subject (tokens 5
  and 6): `take_ordered` does that bookkeeping as nats-py does. Fallback: the callback
  path, where nats-py does it itself.
- `Client._server_info`, the INFO of the server a client is connected to (`server_id`:
  the server's public key, which signs its auth callout requests; `auth_required`: whether
  it asks clients for credentials). Fallback: the
  server's monitoring endpoint (/varz), or ORCH settings naming the key.
- `JetStreamContext._nc`, the connection a JetStream context sends through
  (`connection_of`; no public name). Fallback: hand the connection along with the context.
- `Client._flush_pending(force_flush=True)`, which writes out what the client has
  buffered (`flush_pending`): infra.bus.connection.flush_subscriptions puts its SUBs on
  the wire ahead of a PING. Fallback: `nc.flush()` and a retry of the request that found
  no responder.
- `Msg._client`, the dataclass field of a message's connection (`with_subject`).
  Fallback: keep the stored subject beside the message instead of in a copy of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import nats.aio.client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.protocol.parser import AWAITING_CONTROL_LINE, MAX_CONTROL_LINE_SIZE, Parser

__all__ = [
    "AWAITING_CONTROL_LINE",
    "MAX_CONTROL_LINE_SIZE",
    "ORDERED_CONSUMER_SEQ",
    "ORDERED_STREAM_SEQ",
    "Parser",
    "connection_of",
    "flush_pending",
    "hook_client",
    "message_processor",
    "process_msg",
    "queued",
    "subscription",
    "subscription_of",
    "take_ordered",
    "use_parser",
    "with_subject",
]

# nats-py's handling of every MSG/HMSG frame: (client, sid, subject, reply, data, headers).
ProcessMsg = Callable[[Any, int, bytes, bytes, bytes, bytes], Awaitable[None]]

# nats-py's own, for a hooked client to fall back on.
process_msg: ProcessMsg = nats.aio.client.Client._process_msg

# Where nats-py's ordered consumer reads the stream and consumer sequences in a reply
# subject's tokens, in either of its forms (Client._process_msg).
ORDERED_STREAM_SEQ, ORDERED_CONSUMER_SEQ = 5, 6

_PROCESS_MSG = "_process_msg"
_PARSE_HEADER_LINES = "_parse_header_lines"


def hook_client(cls: type[nats.aio.client.Client], *, process_msg: ProcessMsg | None = None,
                parse_header_lines: Callable[[bytes], dict[str, str]] | None = None) -> None:
    """Make `process_msg` the subclass's handling of every message frame, and
    `parse_header_lines` its parser of header blocks, in place of nats-py's. Nothing is
    added in between: each is called as nats-py calls its own."""
    if not issubclass(cls, nats.aio.client.Client):
        raise TypeError(f"{cls.__qualname__} is not a nats.aio.client.Client")
    for name, given in ((_PROCESS_MSG, process_msg), (_PARSE_HEADER_LINES, parse_header_lines)):
        if given is not None and not hasattr(nats.aio.client.Client, name):
            raise AttributeError(f"nats-py's Client has no {name} any more: "
                                 "infra/bus/nats_internals.py must be brought up to date")
    if process_msg is not None:
        setattr(cls, _PROCESS_MSG, process_msg)
    if parse_header_lines is not None:
        setattr(cls, _PARSE_HEADER_LINES, staticmethod(parse_header_lines))


def use_parser(client: nats.aio.client.Client, parser: Parser) -> None:
    """Feed what the connection reads to `parser` instead of nats-py's own."""
    client._ps = parser


def message_processor(nc: Any) -> Callable[..., Awaitable[None]]:
    """The client's handling of a message frame, for a protocol parser to call (bound)."""
    handler: Callable[..., Awaitable[None]] = getattr(nc, _PROCESS_MSG)
    return handler


def subscription(client: nats.aio.client.Client, sid: int) -> Subscription | None:
    """The subscription with this id on the connection, if it still has it."""
    return client._subs.get(sid)


def subscription_of(subscribed: JetStreamContext.PushSubscription) -> Subscription:
    """The plain subscription under what `js.subscribe` returned: the one the read loop
    hands messages to."""
    return subscribed._sub


def queued(sub: Any) -> int:
    """Messages given to the subscription the usual way and not yet handled (queued, or
    in its callback)."""
    unfinished: int = sub._pending_queue._unfinished_tasks
    return unfinished


def take_ordered(sub: Any, reply_text: str, tokens: list[str]) -> Awaitable[bool] | None:
    """One data message of an ordered push consumer taken as nats-py's
    `Client._process_msg` takes it: counted, the consumer marked active, its sequences
    checked and tracked (for flow control and idle heartbeats). None when it came in
    order; after a gap, the consumer's reset to await: True when the consumer starts
    again after the last message taken (this one is dropped: it comes again)."""
    jsi = sub._jsi
    sub._received += 1
    jsi._active = True
    consumer_seq = int(tokens[ORDERED_CONSUMER_SEQ])
    if consumer_seq != jsi._dseq:
        return _reset(jsi, reply_text)
    jsi._dseq = consumer_seq + 1
    jsi._sseq = int(tokens[ORDERED_STREAM_SEQ])
    jsi.track_sequences(reply_text)
    return None


async def _reset(jsi: Any, reply_text: str) -> bool:
    if await jsi.reset_ordered_consumer(jsi._sseq + 1):
        return True
    jsi.track_sequences(reply_text)
    return False


def server_id(nc: nats.aio.client.Client) -> str | None:
    """The public key of the server `nc` is connected to (its INFO's server_id)."""
    found = nc._server_info.get("server_id")
    return found if isinstance(found, str) and found else None


def auth_required(nc: nats.aio.client.Client) -> bool:
    """Whether the server `nc` is connected to asks every client for credentials (its
    INFO's auth_required): false on a server anyone may use."""
    return bool(nc._server_info.get("auth_required", False))


def connection_of(js: JetStreamContext) -> nats.aio.client.Client:
    """The connection a JetStream context sends through."""
    nc: nats.aio.client.Client = js._nc
    return nc


async def flush_pending(nc: nats.aio.client.Client) -> None:
    """Write out at once what the client has buffered for the server (SUBs among it)."""
    await nc._flush_pending(force_flush=True)


def with_subject(msg: Msg, subject: str) -> Msg:
    """A copy of the message, on the same connection, with this subject and no reply."""
    return Msg(_client=msg._client, subject=subject, reply="", data=msg.data,
               headers=msg.headers)
