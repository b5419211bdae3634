"""What the SDK needs of a nats-py connection beyond its public API."""

from __future__ import annotations

import contextlib
import secrets

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

# The status a NATS server answers a request with when nobody subscribes to its subject.
_STATUS = "Status"
_NO_RESPONDERS = "503"


async def flush_subscriptions(nc: Client) -> None:
    """Return once the server has every subscription this client made so far, so that a
    message published right after (an assignment, a catalog change) reaches them.

    `Client.flush()` alone does not promise that in nats-py 2.16: it writes its PING
    straight to the socket, ahead of SUBs still waiting in the client's pending buffer,
    so the PONG can come back before the server has seen them. Pushing the buffer out
    first keeps the PING behind them. (The server has the same trick in
    infra/bus/connection.py; the SDK keeps its own copy so as to need none of its code.)
    """
    await nc._flush_pending(force_flush=True)  # private: see the docstring
    await nc.flush()


async def request(nc: Client, subject: str, body: bytes, timeout: float,
                  inbox_prefix: str | None = None) -> Msg:
    """A request whose reply comes to `<inbox_prefix>.<random>`, or, without a prefix, to
    the connection's own inbox (nats-py `inbox_prefix`, set when it connected).

    With auth on an identity may subscribe to `_INBOX.<identity>.>` only: a connection
    made without that inbox prefix still gets its replies this way.
    """
    if inbox_prefix is None:
        return await nc.request(subject, body, timeout=timeout)
    inbox = f"{inbox_prefix}.{secrets.token_hex(11)}"
    sub = await nc.subscribe(inbox, max_msgs=1)
    try:
        await nc.publish(subject, body, reply=inbox)
        msg = await sub.next_msg(timeout=timeout)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    if not msg.data and msg.headers and msg.headers.get(_STATUS) == _NO_RESPONDERS:
        raise nats.errors.NoRespondersError
    return msg
