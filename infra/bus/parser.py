"""nats-py's protocol parser with a quicker way through plain MSG frames.

nats-py's parser matches each frame against its regular expressions in turn, and keeps
the frame's arguments in a dict between the control line and the payload: at 100,000
heartbeats a second that was about a sixth of the orchestrator's time (py-spy,
docs/performance.md). Here a `MSG` or `HMSG` frame whose payload has arrived is taken in
one step; anything else (PING, INFO, a frame cut off, anything unusual) goes to nats-py's
own parser, unchanged. Both give `_process_msg` the same arguments
(tests/unit/test_protocol_parser.py checks them on generated streams cut at random).
nats-py's parser and the client's handling of a message are reached through
infra.bus.nats_internals.
"""

from __future__ import annotations

from typing import Any

from infra.bus.nats_internals import (
    AWAITING_CONTROL_LINE,
    MAX_CONTROL_LINE_SIZE,
    Parser,
    message_processor,
)

_MSG = b"MSG "
_HMSG = b"HMSG "
_CRLF = b"\r\n"


class FastParser(Parser):
    def __init__(self, nc: Any) -> None:
        super().__init__(nc)
        self._process_msg = message_processor(nc)

    async def parse(self, data: bytes = b"") -> None:
        self.buf.extend(data)
        while self.buf:
            # self.buf each time: a reconnect may replace it while a message is handled.
            buf = self.buf
            if self.state != AWAITING_CONTROL_LINE:
                await super().parse()  # nats-py's way, through to the buffer's end
                return
            if buf.startswith(_MSG):
                skip, with_headers = len(_MSG), False
            elif buf.startswith(_HMSG):
                skip, with_headers = len(_HMSG), True
            else:
                await super().parse()
                return
            end = buf.find(_CRLF, 0, MAX_CONTROL_LINE_SIZE)
            if end < 0:
                if len(buf) >= MAX_CONTROL_LINE_SIZE:
                    await super().parse()  # nats-py decides what a line this long is
                return  # the rest of the line is on its way
            args = buf[skip:end].split()
            header_size: bytes | bytearray = b"0"
            if with_headers:
                header_size = args.pop(-2) if len(args) in (4, 5) else b""
            if len(args) == 4:
                subject, sid, reply, size = args
            elif len(args) == 3:
                subject, sid, size = args
                reply = bytearray()
            else:
                await super().parse()
                return
            if not (sid.isdigit() and size.isdigit() and header_size.isdigit()):
                await super().parse()
                return
            start = end + len(_CRLF)
            stop = start + int(size)
            if len(buf) < stop + len(_CRLF):
                return  # the payload is on its way: the line is read again then
            headers = None
            if with_headers:
                split = start + int(header_size)
                headers = bytes(buf[start:split])
                start = split
            payload = bytes(buf[start:stop])
            del buf[:stop + len(_CRLF)]
            await self._process_msg(int(sid), bytes(subject), bytes(reply), payload, headers)
