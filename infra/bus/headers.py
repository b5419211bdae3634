"""nats-py's client with a quicker parser of message headers.

nats-py parses every message's header block in Python, and checks each header name for
whitespace one character at a time through a generator: an event carries five headers,
one name 43 characters long, and in a rebuild that check alone was a tenth of the
orchestrator's time (py-spy, docs/performance.md). The parser here gives the same
dictionary for any input (tests/unit/test_header_parser.py checks it against nats-py's
own, on generated blocks), remembering what each raw header name turned out to be.
nats-py's private hooks are reached through infra.bus.nats_internals.
"""

from __future__ import annotations

from typing import Any

import nats.aio.client

from infra.bus import direct, nats_internals
from infra.bus.parser import FastParser

_CRLF = b"\r\n"
_HEADER_LINE = b"NATS/1.0\r\n"
_UNSEEN = " "  # never a key: a name is stripped, and one with whitespace inside is skipped
_NAMES_KEPT = 256  # distinct raw names remembered; more are parsed each time
_names: dict[bytes, str | None] = {}


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """`Name: Value` lines as nats-py's `Client._parse_header_lines` parses them."""
    out: dict[str, str] = {}
    names = _names
    for line in raw.split(_CRLF):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        key = names.get(name, _UNSEEN)
        if key is _UNSEEN:
            key = _header_name(name)
            if len(names) < _NAMES_KEPT:
                names[name] = key
        if key is None:
            continue
        out[key] = value.strip().decode("utf-8", "replace")
    return out


def _header_name(name: bytes) -> str | None:
    """The key nats-py makes of a raw name, or None when it skips the line: not ASCII,
    or whitespace (str.isspace) inside it."""
    try:
        key = name.strip().decode("ascii")
    except UnicodeDecodeError:
        return None
    if key and key.split() != [key]:  # split() breaks at exactly the isspace characters
        return None
    return key


class Client(nats.aio.client.Client):
    """nats-py's client, with a quicker protocol parser (infra.bus.parser), its header
    parsing done by `parse_header_lines`, and the data messages of subscriptions given a
    direct handler taken by infra.bus.direct."""

    def __init__(self) -> None:
        super().__init__()
        nats_internals.use_parser(self, FastParser(self))

    async def process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes,
                          headers: bytes) -> None:
        """Every message frame the connection reads (as nats-py's `_process_msg`)."""
        sub = nats_internals.subscription(self, sid)
        handler = direct.handler_of(sub, reply, headers) if sub is not None else None
        if handler is None:
            await nats_internals.process_msg(self, sid, subject, reply, data, headers)
            return
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += len(data)
        # A data message's block is `NATS/1.0` and header lines (no status): as nats-py's
        # _process_headers reads it.
        parsed = parse_header_lines(headers[len(_HEADER_LINE):]) if headers else None
        await direct.deliver(sub, handler, subject, reply, data, parsed or None)


nats_internals.hook_client(Client, process_msg=Client.process_msg,
                           parse_header_lines=parse_header_lines)


async def connect(**options: Any) -> Client:
    """`nats.connect`, with this module's client."""
    client = Client()
    await client.connect(**options)
    return client
