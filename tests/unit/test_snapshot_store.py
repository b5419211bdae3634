"""The snapshot store sends a snapshot's parts as one stream, never joined."""

from __future__ import annotations

import pytest

from infra.log.snapshot_store import _Parts


@pytest.mark.parametrize("chunk", [1, 3, 4, 7, 100])
def test_parts_read_in_chunks_are_the_parts_joined(chunk: int) -> None:
    parts = [b"abc", b"", b"d", b"efghij", b"k"]
    reader = _Parts(parts)
    read = bytearray()
    buffer = bytearray(chunk)
    while n := reader.readinto(buffer):
        read += buffer[:n]
    assert bytes(read) == b"".join(parts)
    assert reader.readinto(buffer) == 0  # and stays at its end
