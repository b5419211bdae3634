"""The cyclic garbage collector's full collections held off while projections rebuild."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

NEVER = 2**30  # middle-generation collections before a full one: none in a rebuild
_rebuilding = 0  # orchestrators of this process rebuilding now
_full_threshold = 10  # the full generation's threshold to put back


@contextlib.contextmanager
def no_full_collections() -> Iterator[None]:
    """No full collection of the cyclic garbage collector while the projections are
    rebuilt: the heap grows all the while, and each full collection walks all of it
    again (a full-size rebuild spent 2.7 s of its 19 in them, the last ones over half a
    second each). The young generations are still collected, so cycles made and dropped
    meanwhile still go; what is built is frozen after (services.app)."""
    global _rebuilding, _full_threshold
    if not _rebuilding:  # several orchestrators may start at once in one process (tests)
        young, middle, _full_threshold = gc.get_threshold()
        gc.set_threshold(young, middle, NEVER)
    _rebuilding += 1
    try:
        yield
    finally:
        _rebuilding -= 1
        if not _rebuilding:
            young, middle, _ = gc.get_threshold()
            gc.set_threshold(young, middle, _full_threshold)
