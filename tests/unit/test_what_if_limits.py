"""What-if for limits on the in-memory event log: a window the live dispatcher placed,
replayed through the same decision under the limits that were in force, gives the same
placements; under others, other waits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.audit.what_if_limits import what_if_limits
from tests.support import eventually
from tests.unit.test_flow_dispatch import Leader, leader, placed

__all__ = ["leader"]  # the fixture, shared with the live dispatcher's tests


async def run_window(leader: Leader) -> int:
    """Six tasks of key gpu (one at a time) and two without a key, on two agents, each
    submitted once the dispatcher has decided on the one before (so that it looked after
    every event, as the replay does); the test finishes them one by one, in placement
    order. The window's first position."""
    await leader.set_limit(scope="key", name="gpu", concurrency=1)
    await leader.agent("a1", capacity=2)
    await leader.agent("a2", capacity=2)
    start = await leader.log.last_position() + 1
    for i, (submitter, task_id, key) in enumerate(
            [("ci", f"g{i}", "gpu") for i in range(6)] + [("ci", "free0", None),
                                                          ("other", "free1", None)]):
        await leader.submit(submitter, task_id, concurrency_key=key)
        placed_now = 1 + max(0, i - 5)  # g0, then each free task
        await eventually(placed(leader, placed_now), what=f"{task_id} decided")
    finished: list[str] = []
    while len(finished) < 8:
        task_id = next(t for t in leader.assigned() if t not in finished)
        await leader.complete(task_id)
        finished.append(task_id)
        await eventually(settled(leader, finished), what="settled")
    return start


def settled(leader: Leader, finished: list[str]) -> Callable[[], bool]:
    """The last one finished, and the next gpu task (if any is left) placed."""
    open_gpu = min(1, sum(1 for i in range(6) if f"g{i}" not in finished))
    last = finished[-1]
    return lambda: (leader.board.flow.open.get("gpu", 0) == open_gpu
                    and leader.status(last) == "completed")


async def test_the_limits_in_force_reproduce_the_placements_and_others_differ(
        leader: Leader) -> None:
    start = await run_window(leader)
    same = await what_if_limits(leader.log, start, None)
    assert same["placements"]["same"], same["placements"]
    assert [task for task, _, _ in same["placements"]["what_if"]] == leader.assigned()
    gpu: dict[str, Any] = same["keys"]["gpu"]
    assert gpu["actual"]["placed"] == gpu["what_if"]["placed"] == 6
    assert gpu["what_if"]["p99_wait_s"] == gpu["actual"]["p99_wait_s"] or abs(
        gpu["what_if"]["p99_wait_s"] - gpu["actual"]["p99_wait_s"]) < 0.05

    wider = await what_if_limits(leader.log, start, None, [("key:gpu", {"concurrency": 3})])
    assert not wider["placements"]["same"]
    gpu = wider["keys"]["gpu"]
    assert gpu["what_if"]["longest_wait_s"] < gpu["actual"]["longest_wait_s"]
    assert wider["changes"] == [{"limit": "key:gpu", "values": {"concurrency": 3}}]

    tighter = await what_if_limits(leader.log, start, None, [("key:gpu", {"concurrency": 0})])
    gpu = tighter["keys"]["gpu"]
    assert gpu["what_if"]["placed"] == 0 and gpu["what_if"]["longest_wait_s"] > 0
    assert tighter["keys"]["(none)"]["what_if"]["placed"] == 2  # no head-of-line blocking


async def test_a_dispatcher_that_saw_several_submits_at_once_is_replayed_as_it_decided(
        leader: Leader) -> None:
    """Unpaced: the submits reach the dispatcher together and it decides them in one
    round (or as it happens to look); the replay looks where it looked (each placement
    names its round's board position) and decides the same."""
    await leader.set_limit(scope="key", name="gpu", concurrency=2)
    await leader.agent("a1", capacity=3)
    await leader.agent("a2", capacity=3)
    start = await leader.log.last_position() + 1
    for i in range(8):
        await leader.submit("ci" if i % 3 else "other", f"t{i}",
                            concurrency_key="gpu" if i % 2 else None)
    finished: list[str] = []
    while len(finished) < 8:
        await eventually(lambda: any(t not in finished for t in leader.assigned()),
                         what="something to finish")
        task_id = next(t for t in leader.assigned() if t not in finished)
        await leader.complete(task_id)
        finished.append(task_id)
    await eventually(lambda: all(leader.status(f"t{i}") == "completed" for i in range(8)),
                     what="all done")
    same = await what_if_limits(leader.log, start, None)
    assert same["placements"]["same"], same["placements"]
    assert len(same["placements"]["what_if"]) == 8
    other = await what_if_limits(leader.log, start, None, [("key:gpu", {"concurrency": 0})])
    assert not other["placements"]["same"]
    assert other["keys"]["gpu"]["what_if"]["placed"] == 0
