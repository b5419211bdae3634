"""The C heap's free memory is given back after a snapshot, where the C library can."""

from __future__ import annotations

import ctypes
import sys

import pytest

from services.leader import heap


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_on_glibc_free_heap_pages_go_back() -> None:
    if heap._TRIM is None:
        pytest.skip("not glibc")
    chunks = [bytes(100_000) for _ in range(200)]  # from the heap: below the mmap threshold
    del chunks[::2]  # free, each between two still held: the heap cannot shrink over them
    assert heap.give_back_free_memory() is True
    assert len(chunks) == 100


def test_without_the_call_nothing_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_TRIM", None)
    assert heap.give_back_free_memory() is False


def test_the_call_is_found_in_the_process_itself() -> None:
    try:
        ctypes.CDLL(None).malloc_trim  # noqa: B018
    except AttributeError:
        assert heap._TRIM is None
    else:
        assert heap._TRIM is not None
