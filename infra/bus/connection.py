"""NATS connection with endless reconnect, and the signals the health monitor needs."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Awaitable, Callable

from nats.aio.client import Client

from infra.bus import nats_internals
from infra.bus.headers import connect as nats_connect

log = logging.getLogger(__name__)

Listener = Callable[[], Awaitable[None]]
UNREACHABLE_WARNING_EVERY_S = 3.0


async def connect(
    servers: str | list[str],
    name: str = "orchestrator",
    on_disconnected: Listener | None = None,
    on_reconnected: Listener | None = None,
    nkey_seed: str | None = None,
    tls: ssl.SSLContext | None = None,
    inbox_prefix: str = "_INBOX",
) -> Client:
    """Connect, retrying forever: a coordinator must outlive NATS restarts. With
    `nkey_seed`, as the user of that key (the orchestrator's own, with auth on)."""
    urls = servers.split(",") if isinstance(servers, str) else servers

    made: list[Client] = []  # the client, once connected

    async def disconnected() -> None:
        if made and made[0].is_closed:  # closed by us (a stop): not news, no one to tell
            log.info("nats connection closed name=%s", name)
            return
        log.warning("nats disconnected")
        if on_disconnected:
            await on_disconnected()

    async def reconnected() -> None:
        log.info("nats reconnected url=%s", redact(str(nc.connected_url)))
        if on_reconnected:
            await on_reconnected()

    last_error: list[Exception] = []

    async def error(exc: Exception) -> None:
        last_error[:] = [exc]
        log.debug("nats error: %r", exc)

    # nats-py retries the first connection forever, silently: say so while it does.
    warning = asyncio.create_task(_warn_while_unreachable(urls, last_error))
    try:
        nc = await _connect(urls, name, disconnected, reconnected, error, nkey_seed, tls,
                            inbox_prefix)
    finally:
        warning.cancel()
    made.append(nc)
    return nc


def redact(urls: str | list[str]) -> str:
    """URLs fit for a log: any user or password in them replaced."""
    listed = urls.split(",") if isinstance(urls, str) else urls
    return ",".join(re.sub(r"//[^/@]*@", "//***@", url) for url in listed)


async def _warn_while_unreachable(urls: list[str], last_error: list[Exception]) -> None:
    waited = 0.0
    while True:
        await asyncio.sleep(UNREACHABLE_WARNING_EVERY_S)
        waited += UNREACHABLE_WARNING_EVERY_S
        reason = f" ({last_error[0]!r})" if last_error else ""
        log.warning("cannot reach NATS at %s for %.0fs%s; still trying (is ORCH_NATS_URL "
                    "right?)", redact(urls), waited, reason)


async def _connect(urls: list[str], name: str, disconnected: Listener, reconnected: Listener,
                   error: Callable[[Exception], Awaitable[None]],
                   nkey_seed: str | None, tls: ssl.SSLContext | None,
                   inbox_prefix: str) -> Client:
    return await nats_connect(
        inbox_prefix=inbox_prefix,
        nkeys_seed_str=nkey_seed,
        tls=tls,
        servers=urls,
        name=name,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.25,
        connect_timeout=2,
        ping_interval=5,
        max_outstanding_pings=2,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        error_cb=error,
    )


async def flush_subscriptions(nc: Client) -> None:
    """Return once the server has every subscription this client made so far, so another
    connection's request right after finds a responder.

    `Client.flush()` alone does not promise that in nats-py 2.16: it writes its PING
    straight to the socket, ahead of SUBs still waiting in the client's pending buffer,
    so the PONG can come back before the server has seen them. Pushing the buffer out
    first keeps the PING behind them.
    """
    await nats_internals.flush_pending(nc)  # private: see the docstring
    await nc.flush()
