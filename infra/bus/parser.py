"""nats-py's protocol parser with a quicker way through plain MSG frames.

nats-py's parser matches each frame against its regular expressions in turn, and keeps
the frame's arguments in a dict between the control line and the payload: at 100,000
heartbeats a second that was about a sixth of the orchestrator's time (py-spy,
docs/performance.md). Here a plain `MSG` frame whose payload has arrived is taken in one
step; anything else (HMSG, PING, INFO, a frame cut off, anything unusual) goes to
nats-py's own parser, unchanged. Both give `_process_msg` the same arguments
(tests/unit/test_protocol_parser.py checks them on generated streams cut at random).
"""

from __future__ import annotations

from nats.protocol.parser import AWAITING_CONTROL_LINE, MAX_CONTROL_LINE_SIZE, Parser

_MSG = b"MSG "
_CRLF = b"\r\n"


class FastParser(Parser):
    async def parse(self, data: bytes = b"") -> None:
        self.buf.extend(data)
        while self.buf:
            # self.buf each time: a reconnect may replace it while a message is handled.
            buf = self.buf
            if self.state != AWAITING_CONTROL_LINE or not buf.startswith(_MSG):
                await super().parse()  # nats-py's way, through to the buffer's end
                return
            end = buf.find(_CRLF, 0, MAX_CONTROL_LINE_SIZE)
            if end < 0:
                if len(buf) >= MAX_CONTROL_LINE_SIZE:
                    await super().parse()  # nats-py decides what a line this long is
                return  # the rest of the line is on its way
            args = buf[len(_MSG):end].split()
            if len(args) == 4:
                subject, sid, reply, size = args
            elif len(args) == 3:
                subject, sid, size = args
                reply = bytearray()
            else:
                await super().parse()
                return
            if not (sid.isdigit() and size.isdigit()):
                await super().parse()
                return
            start = end + len(_CRLF)
            stop = start + int(size)
            if len(buf) < stop + len(_CRLF):
                return  # the payload is on its way: the line is read again then
            payload = bytes(buf[start:stop])
            del buf[:stop + len(_CRLF)]
            await self.nc._process_msg(int(sid), bytes(subject), bytes(reply), payload, None)
