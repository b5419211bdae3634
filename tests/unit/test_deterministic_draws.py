"""make test and CI draw the same property-based examples on every run of a commit."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st


def _draws() -> list[object]:
    seen: list[object] = []

    @settings(max_examples=30)
    @given(st.lists(st.text(), max_size=3), st.integers())
    def probe(texts: list[str], number: int) -> None:
        seen.append((texts, number))

    probe()
    return seen


def _derandomized() -> bool:
    current = settings.default
    assert current is not None
    return bool(current.derandomize)


def test_the_suite_runs_the_derandomized_profile_unless_fuzzing() -> None:
    expected = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    assert _derandomized() is (expected == "ci")


def test_two_runs_draw_the_same_examples() -> None:
    if not _derandomized():
        pytest.skip("make fuzz draws fresh examples on purpose")
    first, second = _draws(), _draws()
    assert len(first) > 1
    assert first == second
