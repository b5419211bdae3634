"""One command at a time per aggregate, and no lock kept for an idle aggregate."""

from __future__ import annotations

import asyncio

import pytest

from infra.log.repository import AggregateLock, _Held


async def test_commands_on_one_aggregate_take_turns_and_leave_no_lock_behind() -> None:
    table: dict[str, _Held] = {}
    inside: list[str] = []
    order: list[str] = []

    async def command(name: str, aggregate: str) -> None:
        async with AggregateLock(table, aggregate):
            inside.append(name)
            assert [n for n in inside if n.startswith(aggregate)] == [name]
            await asyncio.sleep(0)
            order.append(name)
            inside.remove(name)

    await asyncio.gather(command("a-1", "a"), command("a-2", "a"), command("b-1", "b"))
    assert order.index("a-1") < order.index("a-2")
    assert table == {}


async def test_a_waiter_cancelled_before_its_turn_leaves_the_table_clean() -> None:
    table: dict[str, _Held] = {}
    holding = AggregateLock(table, "a")
    await holding.__aenter__()
    waiter = asyncio.ensure_future(AggregateLock(table, "a").__aenter__())
    await asyncio.sleep(0)
    assert table["a"].users == 2
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await holding.__aexit__(None, None, None)
    assert table == {}
