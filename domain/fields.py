"""Constrained field types shared by the protocol's command and message models."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

# Agent ids, task ids and service names: safe as one token of a NATS subject.
Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Capability = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/-]{1,64}$")]
# Task kinds: never a subject token, so dots, colons and slashes are fine.
Kind = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/-]{1,128}$")]
LabelKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_./-]{1,63}$")]
LabelValue = Annotated[str, StringConstraints(max_length=256)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Incarnation = Annotated[int, Field(ge=1)]

# Strict: no coercion of "5" into 5, and unknown fields are refused rather than ignored.
STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)

MAX_COMMAND_BYTES = 64 * 1024


# What the log can keep of a JSON value given by a client (a task's payload, its result):
# orjson, which writes the log, takes integers of 64 bits and nesting 254 deep at most.
_SMALLEST_INT, _LARGEST_INT = -(2**63), 2**64 - 1
MAX_JSON_DEPTH = 254


def _storable(value: Any, depth: int = 0) -> Any:
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    kind = type(value)
    if kind is int and not _SMALLEST_INT <= value <= _LARGEST_INT:
        raise ValueError("an integer beyond 64 bits (send it as a string)")
    if kind is dict:
        for item in value.values():
            _storable(item, depth + 1)
    elif kind is list:
        for item in value:
            _storable(item, depth + 1)
    return value


StorableJson = Annotated[Any, AfterValidator(_storable)]
