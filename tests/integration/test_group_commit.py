"""Group commit against a real nats-server: batches, duplicates, conflicts, and a
connection lost while answers are awaited."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable

import pytest
from nats.js.errors import APIError

from infra.bus.connection import connect
from infra.bus.embedded import EmbeddedNats
from infra.log.group_commit import (
    BATCH_PREFIX_CHARS,
    GROUPS_IN_FLIGHT,
    SEPARATELY_UP_TO,
    GroupCommit,
)
from infra.log.streams import provision
from infra.names import ERR_WRONG_LAST_SEQUENCE, Names
from tests.support import eventually

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


async def test_later_groups_are_sent_while_earlier_ones_await_their_answers(
        own_server: EmbeddedNats, names: Names) -> None:
    nc = await connect(own_server.url)
    await provision(nc.jetstream(), names, heartbeat_history=10)
    commit = GroupCommit(nc, names.events_stream, timeout=ANSWER_TIMEOUT_S)
    groups: list[int] = []
    commit.on_batch = groups.append

    def groups_sent(count: int) -> Callable[[], bool]:
        return lambda: len(groups) == count

    try:
        own_server.pause()  # nothing is answered meanwhile
        waves = []
        for wave in range(GROUPS_IN_FLIGHT + 1):
            waves.append([asyncio.create_task(commit.append(*message(names, f"w{wave}-{i}")))
                          for i in range(wave + 1)])
            if wave < GROUPS_IN_FLIGHT:  # the writer takes the wave as a group of its own
                await eventually(groups_sent(wave + 1), what=f"group {wave}")
        for _ in range(20):  # the writer runs again and again: the last wave still waits
            await asyncio.sleep(0)
        # The groups in flight were all sent unanswered; the next waits for a slot.
        assert groups == list(range(1, GROUPS_IN_FLIGHT + 1))
        assert not any(task.done() for wave in waves for task in wave)

        own_server.resume()
        stored = [await asyncio.gather(*wave) for wave in waves]
        assert groups == list(range(1, GROUPS_IN_FLIGHT + 2))
        # Stored in the order the groups were sent, each append once.
        flat = [sequence for wave in stored for sequence in sorted(wave)]
        assert flat == list(range(1, len(flat) + 1))
    finally:
        await commit.close()
        await nc.close()


async def test_batch_ids_are_short_and_stored_with_each_message(nats_server: EmbeddedNats,
                                                                names: Names) -> None:
    nc = await connect(nats_server.url)
    await provision(nc.jetstream(), names, heartbeat_history=10)
    commit = GroupCommit(nc, names.events_stream)
    commit._batch_numbers = itertools.count(4094)  # as after a long run: the count wraps
    try:
        sent = [message(names, f"a{i}") for i in range(2 * (SEPARATELY_UP_TO + 1))]
        sequences = await asyncio.gather(*(commit.append(*m) for m in sent))
        stored = [await nc.jetstream().get_msg(names.events_stream, s) for s in sequences]
        batch_ids = {(m.headers or {}).get("Nats-Batch-Id", "") for m in stored} - {""}
        assert batch_ids, "appends that wait together go as an atomic batch"
        assert all(len(b) == BATCH_PREFIX_CHARS + 1 for b in batch_ids)
    finally:
        await commit.close()
        await nc.close()


async def test_two_writers_with_the_same_batch_ids_still_store_each_append_once(
    nats_server: EmbeddedNats, names: Names
) -> None:
    """Batch ids are unique only by chance across writers: when two writers' batches meet
    under one id, the server refuses them, and each append is written on its own."""
    connections = [await connect(nats_server.url) for _ in range(2)]
    await provision(connections[0].jetstream(), names, heartbeat_history=10)
    commits = [GroupCommit(nc, names.events_stream) for nc in connections]
    for commit in commits:
        commit._batch_prefix = "SAME"
    try:
        for _ in range(5):
            sent = [(commit, message(names, f"{n}-{uuid.uuid4().hex[:6]}"))
                    for n, commit in enumerate(commits) for _ in range(40)]
            sequences = await asyncio.gather(*(c.append(*m) for c, m in sent))
            assert len(set(sequences)) == len(sent)
            for (_, (subject, _, headers)), sequence in zip(sent, sequences, strict=True):
                stored = await connections[0].jetstream().get_msg(names.events_stream,
                                                                  sequence)
                assert stored.subject == subject
                assert (stored.headers or {})["Nats-Msg-Id"] == headers["Nats-Msg-Id"]
        info = await connections[0].jetstream().stream_info(names.events_stream)
        assert info.state.messages == 5 * 80
    finally:
        for commit in commits:
            await commit.close()
        for nc in connections:
            await nc.close()
