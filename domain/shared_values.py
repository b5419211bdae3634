"""One object for each agent attribute value that a fleet repeats.

Agents of one pool declare the same capabilities, and many declare no labels or no
services; held once, 100,000 agents of a few kinds keep a few lists rather than 100,000.
Holders never mutate a shared value: a change of declaration replaces it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any, TypeVar

H = TypeVar("H", bound=Hashable)

# Distinct capability lists kept; past this, values are copied as usual.
MAX_SHARED_CAPABILITIES = 10_000

_capabilities: dict[tuple[str, ...], list[str]] = {}
_NO_LABELS: dict[str, str] = {}
_NO_SERVICES: list[dict[str, Any]] = []


def capabilities(value: Iterable[str]) -> list[str]:
    key = tuple(value)
    shared = _capabilities.get(key)
    if shared is None:
        shared = list(key)
        if len(_capabilities) < MAX_SHARED_CAPABILITIES:
            _capabilities[key] = shared
    return shared


def one_of(table: dict[H, H], value: H, limit: int) -> H:
    """The equal value `table` holds already, else `value` (kept while the table is
    under `limit`, so that values never seen twice cannot grow it without end)."""
    shared = table.get(value)
    if shared is None:
        shared = value
        if len(table) < limit:
            table[value] = value
    return shared


def labels(value: dict[str, str]) -> dict[str, str]:
    """Labels are often unique to an agent (a host name), so only "none" is shared;
    any other value is returned as it is."""
    return value if value else _NO_LABELS


def services(value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Only "none" is shared; any other value is returned as it is."""
    return value if value else _NO_SERVICES
