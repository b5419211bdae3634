"""A schedule is its owner's, with real credentials: another submitter can neither act on
it, take its name, nor list it (its subjects are its own: the forged-identity matrix,
tests/security/test_matrix.py, covers sending on the owner's); an operator may. The
tasks it submits are its owner's, so their outcomes reach the owner alone."""

from __future__ import annotations

from typing import Any

from infra import names as n
from tests.security.conftest import Connected, Secure
from tests.support import eventually, request


async def send(client: Connected, command: str, body: dict[str, Any]) -> dict[str, Any]:
    return await request(client.nc, f"orch.{command}.{client.identity}", body, 10)


async def test_another_submitter_cannot_touch_take_or_see_a_schedule(secure: Secure) -> None:
    owner = await secure.connect("sub-own", await secure.identity("sub-own", ["submitter"]))
    other = await secure.connect("sub-oth", await secure.identity("sub-oth", ["submitter"]))
    made = await send(owner, n.SCHEDULE_CREATE, {
        "name": "nightly", "cron": "0 3 * * *", "task": {"kind": "x", "payload": "secret"}})
    assert made["ok"] and made["schedule"]["owner"] == "sub-own", made
    before = await secure.orch.store.last_position()
    for command in (n.SCHEDULE_PAUSE, n.SCHEDULE_RESUME, n.SCHEDULE_DELETE):
        reply = await send(other, command, {"name": "nightly"})
        assert reply["error"]["code"] == "not_found", reply  # as if it did not exist
    taken = await send(other, n.SCHEDULE_CREATE, {
        "name": "nightly", "every_s": 1, "task": {"kind": "x"}, "replace": True})
    assert taken["error"]["code"] == "conflict" and "secret" not in str(taken)
    await eventually(lambda: secure.orch.schedules.book.get("nightly"), what="projected")
    assert (await send(other, n.SCHEDULE_LIST, {}))["schedules"] == []
    assert await secure.orch.store.last_position() == before  # nothing written

    operator = await secure.operator()
    paused = await send(operator, n.SCHEDULE_PAUSE, {"name": "nightly"})
    assert paused["schedule"]["status"] == "paused"
    events = await secure.orch.store.history("schedule", "nightly")
    assert [(e.name, e.identity) for e in events] == [("Created", "sub-own"),
                                                      ("Paused", "operator")]


async def test_a_revoked_owners_schedule_stops_firing(secure: Secure) -> None:
    owner = await secure.connect("sub-rev", await secure.identity("sub-rev", ["submitter"]))
    made = await send(owner, n.SCHEDULE_CREATE, {
        "name": "often", "every_s": 1, "overlap": "allow", "task": {"kind": "x"}})
    assert made["ok"], made

    async def names() -> list[str]:
        return [e.name for e in await secure.orch.store.history("schedule", "often")]

    await eventually(lambda: _has(names(), "Fired"), timeout=15, what="a firing")
    revoked = await secure.admin("admin.revoke", {"name": "sub-rev", "reason": "left"})
    assert revoked["ok"], revoked
    await eventually(lambda: _has(names(), "Paused"), timeout=15, what="paused")
    events = await secure.orch.store.history("schedule", "often")
    paused = [e for e in events if e.name == "Paused"]
    assert paused[0].data()["reason"] == "its owner sub-rev is revoked"
    assert events[-1].name == "Paused"  # and nothing fired after it


async def _has(found: Any, name: str) -> bool:
    return name in await found
