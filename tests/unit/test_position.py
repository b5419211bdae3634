"""A log position readers wait on: every waiter is woken by the advance it waits for."""

from __future__ import annotations

import asyncio

from projections.position import Position


async def test_every_waiter_wakes_at_the_advance_it_waits_for() -> None:
    position = Position()
    first = asyncio.ensure_future(position.wait_for(1, 5.0))
    second = asyncio.ensure_future(position.wait_for(2, 5.0))
    third = asyncio.ensure_future(position.wait_for(2, 5.0))
    await asyncio.sleep(0)  # all three waiting
    position.advance(1)
    assert await first is True
    assert not second.done() and not third.done()
    position.advance(2)
    assert await second is True and await third is True


async def test_advances_nobody_waits_for_wake_a_later_waiter_only_at_its_own() -> None:
    position = Position()
    for value in range(1, 1000):
        position.advance(value)
    waiting = asyncio.ensure_future(position.wait_for(1001, 5.0))
    await asyncio.sleep(0)
    position.advance(1000)
    await asyncio.sleep(0)
    assert not waiting.done()  # woken, looked, waits again
    position.advance(1001)
    assert await waiting is True


async def test_a_wait_already_met_returns_at_once_and_one_never_met_times_out() -> None:
    position = Position()
    position.advance(5)
    assert await position.wait_for(3, 0.0) is True
    assert await position.wait_for(6, 0.05) is False


async def test_a_position_never_goes_back() -> None:
    position = Position()
    position.advance(7)
    position.advance(3)
    assert position.value == 7
