"""Direct delivery on a real nats-server: an ordered push subscription whose data messages
go straight to a handler still takes every message of its stream once and in order,
across flow control and across its consumer being lost and made again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig

from infra.bus.direct import deliver_directly, position_and_time_of
from infra.bus.headers import Client, connect
from tests.support import eventually


@pytest.fixture
async def client(nats_server) -> AsyncIterator[Client]:
    nc = await connect(servers=[nats_server.url])
    yield nc
    await nc.close()


class Taken:
    def __init__(self) -> None:
        self.sequences: list[int] = []
        self.directly = 0
        self.subjects: set[str] = set()

    async def usual(self, msg: Msg) -> None:
        sequence, _ = position_and_time_of(msg.reply.split("."))
        self.sequences.append(sequence)
        self.subjects.add(msg.subject)

    def direct(self, subject: bytes, sequence: int, at: datetime, data: bytes,
               headers: dict[str, str] | None) -> None:
        assert at.tzinfo is not None and data.startswith(b"beat")
        self.sequences.append(sequence)
        self.directly += 1
        self.subjects.add(subject.decode())


async def test_every_message_once_and_in_order_across_a_lost_consumer(
        client: Client, prefix: str) -> None:
    js = client.jetstream()
    stream = f"{prefix}_DIRECT"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.d.>"],
                                     storage=StorageType.MEMORY))
    for i in range(3000):  # before the subscription: a backlog, under flow control
        await client.publish(f"{prefix}.d.a{i % 7}", b"beat %d" % i)
    taken = Taken()
    sub = await js.subscribe(f"{prefix}.d.>", stream=stream, cb=taken.usual,
                             ordered_consumer=True, idle_heartbeat=0.5,
                             pending_msgs_limit=0, pending_bytes_limit=0)
    deliver_directly(sub, taken.direct)
    await eventually(lambda: len(taken.sequences) >= 3000 or None, timeout=30,
                     what="the backlog")

    # The consumer is lost: nats-py's ordered consumer notices the missing heartbeats
    # and makes a new one after the last message taken.
    info = await sub.consumer_info()
    await js.delete_consumer(stream, info.name)
    for i in range(3000, 5000):
        await client.publish(f"{prefix}.d.a{i % 7}", b"beat %d" % i)
    await eventually(lambda: len(taken.sequences) >= 5000 or None, timeout=30,
                     what="the messages after the consumer was made again")
    assert taken.sequences == list(range(1, 5001))
    assert taken.directly > 4000, "the data messages went the direct way"
    assert taken.subjects == {f"{prefix}.d.a{i}" for i in range(7)}
    await sub.unsubscribe()
    await js.delete_stream(stream)


async def test_a_message_being_handled_the_usual_way_is_not_overtaken(
        client: Client, prefix: str) -> None:
    js = client.jetstream()
    stream = f"{prefix}_DIRECT2"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.e.>"],
                                     storage=StorageType.MEMORY))
    await client.publish(f"{prefix}.e.a", b"beat 0")
    await client.flush()
    held = asyncio.Event()
    taken = Taken()

    async def slow(msg: Msg) -> None:  # the first message waits, as a paused runner does
        await held.wait()
        await taken.usual(msg)

    sub = await js.subscribe(f"{prefix}.e.>", stream=stream, cb=slow, ordered_consumer=True,
                             pending_msgs_limit=0, pending_bytes_limit=0)
    queue: Any = sub._sub._pending_queue
    await eventually(lambda: queue._unfinished_tasks > 0 or None,
                     what="the first message taken the usual way")
    deliver_directly(sub, taken.direct)
    for i in range(1, 50):
        await client.publish(f"{prefix}.e.a", b"beat %d" % i)
    await client.flush()
    await eventually(lambda: queue.qsize() >= 49 or None,
                     what="later messages queued behind the one being handled")
    assert taken.sequences == []
    held.set()
    await eventually(lambda: len(taken.sequences) >= 50 or None, what="all of them")
    assert taken.sequences == list(range(1, 51))
    await sub.unsubscribe()
    await js.delete_stream(stream)
