"""Atomic batch ids: short (the server stores one with every batched event), URL-safe,
and distinct for each batch of a writer."""

from __future__ import annotations

import re

from infra.log.group_commit import BATCH_PREFIX_CHARS, base64_count, new_batch_prefix

URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


def test_a_count_in_base_64_is_distinct_and_short() -> None:
    counts = [base64_count(n) for n in range(70_000)]
    assert len(set(counts)) == len(counts)
    assert all(URL_SAFE.match(c) for c in counts)
    assert [base64_count(n) for n in (0, 1, 63, 64, 4095, 4096)] == [
        "A", "B", "_", "BA", "__", "BAA"]


def test_a_writers_prefix_is_4_random_url_safe_characters() -> None:
    prefixes = {new_batch_prefix() for _ in range(200)}
    assert len(prefixes) > 190
    assert all(len(p) == BATCH_PREFIX_CHARS and URL_SAFE.match(p) for p in prefixes)
