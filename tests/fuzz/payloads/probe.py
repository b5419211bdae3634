"""What a fuzzed payload is: a `Probe` (the bytes, and the outcomes the orchestrator may
answer), the outcome codes, and the hand-written JSON its body is rendered as.

Bodies are rendered by hand (`render`), not by a JSON library, so they can hold what
libraries refuse to write: NaN and Infinity, integers of any size, duplicate keys, nesting
thousands deep, lone surrogate escapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from domain.fields import MAX_COMMAND_BYTES

# --- outcomes -----------------------------------------------------------------------

OK = "ok"  # accepted without a write (a documented no-op repeat, or a read)
INVALID = "invalid_request"
TOO_LARGE = "payload_too_large"
NOT_FOUND = "not_found"
CONFLICT = "conflict"
STALE = "stale_token"
UNAUTHORIZED = "unauthorized"

# The agent the subject of an agent's command names, unless a probe says otherwise.
SELF = "fz-self"


@dataclass(frozen=True)
class Probe:
    """One payload, what the orchestrator may answer, and where it came from."""

    data: bytes
    expect: frozenset[str]
    category: str
    # The body is not JSON at all: the refusal must say so (detail type json_invalid).
    not_json: bool = False
    # The sender token of the subject: the agent of an agent's command (None: SELF), the
    # identity of a client's (None: the tests'); a catalog query's subject has none.
    sender: str | None = None
    # An invalid_request that is not about the body's fields (the subject, a reserved
    # name) has no details.
    bare: bool = False

    def __repr__(self) -> str:  # short enough for a failure report
        shown = self.data if len(self.data) <= 300 else (
            self.data[:200] + b"...<%d bytes>..." % len(self.data) + self.data[-60:])
        sender = "" if self.sender is None else f", sender={self.sender!r}"
        return f"Probe({self.category}, expect={sorted(self.expect)}{sender}, data={shown!r})"


def sized(data: bytes, category: str, not_json: bool = False) -> Probe:
    """An invalid body: invalid_request, or payload_too_large when over the limit."""
    if len(data) > MAX_COMMAND_BYTES:
        return Probe(data, frozenset({TOO_LARGE}), category)
    return Probe(data, frozenset({INVALID}), category, not_json)


# --- rendering ----------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A JSON text fragment written as is (NaN, 1e400, a deep nesting, a bad escape)."""

    text: str


@dataclass(frozen=True)
class Pairs:
    """A JSON object written with these members in this order, duplicates allowed."""

    items: tuple[tuple[str, Any], ...]


def render(value: Any) -> str:
    """JSON text of `value`, also for what strict JSON writers refuse."""
    if isinstance(value, Raw):
        return value.text
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, list | tuple):
        return "[" + ",".join(render(v) for v in value) + "]"
    if isinstance(value, Pairs):
        return "{" + ",".join(f"{render(k)}:{render(v)}" for k, v in value.items) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{render(k)}:{render(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot render {type(value)}")
