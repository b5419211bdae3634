"""No full garbage collection while projections are rebuilt, and the setting put back
even when two orchestrators of one process rebuild at overlapping times."""

from __future__ import annotations

import gc

from services.gc_tuning import NEVER, no_full_collections


def test_full_collections_wait_for_every_overlapping_rebuild() -> None:
    before = gc.get_threshold()
    first, second = no_full_collections(), no_full_collections()
    first.__enter__()
    assert gc.get_threshold()[2] == NEVER
    second.__enter__()
    first.__exit__(None, None, None)  # the first finishes while the second still runs
    assert gc.get_threshold()[2] == NEVER
    second.__exit__(None, None, None)
    assert gc.get_threshold() == before


def test_the_setting_is_put_back_when_a_rebuild_fails() -> None:
    before = gc.get_threshold()
    try:
        with no_full_collections():
            raise RuntimeError("the log could not be read")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
