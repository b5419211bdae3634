"""The quicker parser hands the client what nats-py's own parser does, in the same order,
for protocol streams of every frame kind cut into chunks at random places."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from nats.errors import ProtocolError
from nats.protocol.parser import Parser

from infra.bus.parser import FastParser


class Recorder:
    """What a parser calls on its client."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def _process_msg(self, *args: Any) -> None:
        self.calls.append(("msg", *args))

    async def _process_ping(self) -> None:
        self.calls.append(("ping",))

    async def _process_pong(self) -> None:
        self.calls.append(("pong",))

    async def _process_info(self, info: Any) -> None:
        self.calls.append(("info", info))

    async def _process_err(self, err: str) -> None:
        self.calls.append(("err", err))


def frames(draws: random.Random, count: int) -> bytes:
    out = bytearray()
    for _ in range(count):
        payload = bytes(draws.choice(b"ab \r\n{}\x00") for _ in range(draws.randrange(0, 40)))
        subject = draws.choice([b"orch.hb.w1", b"_INBOX.x.y", b"a"])
        sid = draws.randrange(1, 500)
        kind = draws.randrange(9)
        if kind < 4:  # a plain message, with or without a reply, spaced as servers do
            reply = draws.choice([b"", b"$JS.ACK.S.c.1.2.3.1700000000000000000.0", b"r"])
            line = b"MSG %s %d %s%d\r\n" % (subject, sid, reply + b" " if reply else b"",
                                           len(payload))
            if kind == 3:  # odd spacing: nats-py's expressions take it too
                line = line.replace(b" ", b"  \t", 2)
            out += line + payload + b"\r\n"
        elif kind == 4:  # with headers, a reply or not; a status alone (an idle heartbeat)
            header = draws.choice([b"NATS/1.0\r\nA: b\r\n\r\n",
                                   b"NATS/1.0 100 Idle Heartbeat\r\n\r\n"])
            reply = draws.choice([b"", b"$JS.ACK.S.c.1.2.3.1700000000000000000.0 "])
            out += b"HMSG %s %d %s%d %d\r\n" % (subject, sid, reply, len(header),
                                                len(header) + len(payload))
            out += header + payload + b"\r\n"
        elif kind == 5:
            out += b"PING\r\n"
        elif kind == 6:
            out += b"PONG\r\n"
        elif kind == 7:
            out += b"+OK\r\n"
        else:
            out += b'INFO {"server_id":"x","max_payload":1048576}\r\n'
    return bytes(out)


async def parse_in_chunks(parser: Parser, stream: bytes, cuts: list[int]) -> None:
    previous = 0
    for cut in [*cuts, len(stream)]:
        await parser.parse(stream[previous:cut])
        previous = cut


@pytest.mark.parametrize("seed", range(40))
def test_the_same_calls_as_nats_py(seed: int) -> None:
    draws = random.Random(seed)
    stream = frames(draws, 300)
    cuts = sorted(draws.sample(range(1, len(stream)), min(len(stream) - 1, 120)))
    theirs, ours = Recorder(), Recorder()

    async def both() -> None:
        await parse_in_chunks(Parser(theirs), stream, cuts)
        await parse_in_chunks(FastParser(ours), stream, cuts)

    asyncio.run(both())
    assert any(call[0] == "msg" for call in theirs.calls)
    assert ours.calls == theirs.calls
    for call in ours.calls:  # the same types too: bytes, not bytearrays
        assert [type(a) for a in call] == [type(a) for a in theirs.calls[ours.calls.index(call)]]


def test_a_malformed_message_line_is_refused_as_nats_py_refuses_it() -> None:
    with pytest.raises(ProtocolError):
        asyncio.run(FastParser(Recorder()).parse(b"MSG a b c d e f\r\n"))
