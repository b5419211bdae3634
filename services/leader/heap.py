"""Free memory of the C heap given back to the system, where the C library can.

Writing a snapshot takes megabytes from glibc's heap for a moment: its parts of about
100 KB (projections/snapshot.py) and the object store's chunks as they are sent. The
event loop runs meanwhile, and what it allocates then for longer (a command's state, a
board's growing tables) can sit above those buffers, so the heap cannot shrink once they
are freed: the memory benchmark's runs that had it kept 8 to 10 MB of such free heap,
about 180 B per finished task (docs/performance.md, "Memory"). glibc's malloc_trim(0)
returns the free pages inside the heap as well as at its top. Other C libraries (musl,
macOS) have no such call, and nothing is done there.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library this process runs on
    except (AttributeError, OSError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def give_back_free_memory() -> bool:
    """True when the C library was asked to, and gave some back."""
    return _TRIM is not None and _TRIM(0) == 1
