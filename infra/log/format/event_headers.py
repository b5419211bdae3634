"""What the log knows about an event besides its state, in its headers: written in one
header, read in that form or the older one of a header each (docs/protocol.md, Events).

`Orch: [version, identity, causation_id, correlation_id]`, a JSON array: the identity is
`0` for the orchestrator's own decisions (`"orchestrator"` in events written before); the
correlation id is `true` when it is the causation id (a command's events: the same
request id twice); trailing fields that are absent (null) are left out, so an event
with no correlation id has three. JSON, because a causation id is whatever a client sent
as its request id.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from infra.caller import ORCHESTRATOR
from infra.log.format.foreign import ForeignRecord
from infra.names import Header

SAME_AS_CAUSATION = True
# The orchestrator's identity, written as a number: no identity is one (identities are
# names, `^[A-Za-z0-9_-]{1,64}$`). Part of the log's format: never another value.
ORCHESTRATOR_IDENTITY = 0


class EventHeaders(NamedTuple):
    version: int
    identity: str | None  # None in events recorded before identities were
    causation_id: str | None
    correlation_id: str | None


# An event's id, stored with every event as its Nats-Msg-Id: 96 random bits, 16
# characters. Enough for what it is used for: the server's duplicate window (2 minutes)
# and the causation ids of what it caused, among every event a log will ever hold (two
# alike among 10^10 events: about 6 in 10^10). Events written before have 128 bits (22
# characters) or a UUID's 36-character text; ids are opaque strings.
EVENT_ID_BYTES = 12


def new_event_id(size: int = 16) -> str:
    """A random id of `size` bytes in URL-safe base64, without padding: 22 characters for
    the default 128 bits (request ids), 16 for an event's EVENT_ID_BYTES."""
    return base64.urlsafe_b64encode(os.urandom(size)).rstrip(b"=").decode()


def pack(version: int, identity: str | None, causation_id: str | None,
         correlation_id: str | None) -> str:
    """The value of the `Orch` header. An empty id is no id, as it was no header."""
    causation_id, correlation_id = causation_id or None, correlation_id or None
    correlation: Any = correlation_id
    if correlation_id is not None and correlation_id == causation_id:
        correlation = SAME_AS_CAUSATION
    who: Any = ORCHESTRATOR_IDENTITY if identity == ORCHESTRATOR else identity
    fields: list[Any] = [version, who, causation_id, correlation]
    while fields[-1] is None:
        fields.pop()
    return orjson.dumps(fields).decode()


def read(headers: Mapping[str, str]) -> EventHeaders:
    """An event's version, identity, causation and correlation ids, from `Orch` or, in
    events written before it, from Orch-Version, Orch-Identity, Orch-Causation-Id and
    Orch-Correlation-Id (each absent when it had none). ForeignRecord when it has
    neither (a record the orchestrator did not write)."""
    packed = headers.get(Header.EVENT)
    if packed is None:
        try:
            version = int(headers[Header.VERSION])
        except (KeyError, ValueError):
            raise ForeignRecord("no Orch header") from None
        return EventHeaders(version, headers.get(Header.IDENTITY),
                            headers.get(Header.CAUSATION_ID),
                            headers.get(Header.CORRELATION_ID))
    try:
        fields = orjson.loads(packed)
        version = int(fields[0])
    except (orjson.JSONDecodeError, TypeError, ValueError, IndexError, KeyError):
        raise ForeignRecord("unreadable Orch header") from None
    if type(fields) is not list:
        raise ForeignRecord("unreadable Orch header")
    count = len(fields)
    causation = fields[2] if count > 2 else None
    correlation = fields[3] if count > 3 else None
    if correlation is SAME_AS_CAUSATION:
        correlation = causation
    identity = fields[1] if count > 1 else None
    if type(identity) is int and identity == ORCHESTRATOR_IDENTITY:
        identity = ORCHESTRATOR
    return EventHeaders(version, identity, causation, correlation)
