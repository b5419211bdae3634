"""Group commit against a real nats-server: batches, duplicates, conflicts, and a
connection lost while answers are awaited."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from nats.js.errors import APIError

from infra.bus.connection import connect
from infra.bus.embedded import EmbeddedNats
from infra.log.group_commit import GroupCommit
from infra.log.streams import provision
from infra.names import ERR_WRONG_LAST_SEQUENCE, Names

# Long enough that an append failing fast can only be the lost connection's doing.
ANSWER_TIMEOUT_S = 60.0


def message(names: Names, aggregate: str, **headers: str) -> tuple[str, bytes, dict[str, str]]:
    return (names.event("agent", aggregate, "Registered"), b"{}",
            {"Nats-Msg-Id": uuid.uuid4().hex, **headers})


async def test_concurrent_appends_are_stored_once_each(nats_server: EmbeddedNats,
                                                       names: Names) -> None:
    nc = await connect(nats_server.url)
    await provision(nc.jetstream(), names, heartbeat_history=10)
    commit = GroupCommit(nc, names.events_stream)
    try:
        sent = [message(names, f"a{i}") for i in range(50)]
        sequences = await asyncio.gather(*(commit.append(*m) for m in sent))
        assert sorted(sequences) == list(range(1, 51))

        again = await commit.append(*sent[7])  # the same Nats-Msg-Id: not stored twice
        assert again == sequences[7]

        with pytest.raises(APIError) as conflict:  # a stale expected sequence
            await commit.append(*message(names, "a1", **{
                "Nats-Expected-Last-Subject-Sequence": "0",
                "Nats-Expected-Last-Subject-Sequence-Subject": names.event("agent", "a1", "*"),
            }))
        assert conflict.value.err_code == ERR_WRONG_LAST_SEQUENCE
        info = await nc.jetstream().stream_info(names.events_stream)
        assert info.state.last_seq == 50
    finally:
        await commit.close()
        await nc.close()


async def test_a_lost_connection_ends_the_wait_for_an_answer(own_server: EmbeddedNats,
                                                             names: Names) -> None:
    commit: GroupCommit | None = None

    async def lost() -> None:
        assert commit is not None
        commit.connection_lost()

    nc = await connect(own_server.url, on_disconnected=lost)
    await provision(nc.jetstream(), names, heartbeat_history=10)
    commit = GroupCommit(nc, names.events_stream, timeout=ANSWER_TIMEOUT_S)
    try:
        assert await commit.append(*message(names, "before")) == 1
        own_server.pause()  # the next appends are sent, and never answered
        waiting = [asyncio.create_task(commit.append(*message(names, f"w{i}")))
                   for i in range(3)]
        await asyncio.wait(waiting, timeout=0.5)
        assert not any(w.done() for w in waiting)

        own_server.kill()  # the connection drops with the answers owed on it
        await own_server.astart()  # same store
        # Not waited out: the batch is written again, one by one, once reconnected.
        done, _ = await asyncio.wait(waiting, timeout=ANSWER_TIMEOUT_S / 2)
        assert done == set(waiting)
        assert sorted(w.result() for w in waiting) == [2, 3, 4]
        assert await commit.append(*message(names, "after")) == 5
    finally:
        await commit.close()
        await nc.close()
