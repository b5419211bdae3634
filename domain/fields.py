"""Constrained field types shared by the protocol's command and message models."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints

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
