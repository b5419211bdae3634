"""The operators' command that sets a limit of flow control (domain/limits/limit.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from domain.fields import STRICT
from domain.limits.limit import KEY_PATTERN

LimitName = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]


class SetLimit(BaseModel):
    """Set (or, with no value given, lift) one limit. `scope` says what it bounds: a
    concurrency `key` (concurrency, rate, burst), the `default` concurrency of keys
    without their own (name `key`), a `fairness` key's weight, a `submitter`'s most
    unfinished tasks. `rate` reads like `600/min`, `10/s`, `5000/hour`."""

    model_config = STRICT

    scope: Literal["key", "default", "fairness", "submitter"]
    name: LimitName
    concurrency: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    rate: Annotated[str, StringConstraints(max_length=32)] | None = None
    burst: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    weight: Annotated[float, Field(gt=0, le=1000)] | None = None
    max_unfinished: Annotated[int, Field(ge=0, le=100_000_000)] | None = None
