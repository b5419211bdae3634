"""Service discovery for Python clients: query the catalog, or watch a service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any

import nats.errors
import orjson
from nats.aio.client import Client

from infra.codec import create_mapper
from infra.event_store import EventStore, RecordedEvent
from infra.names import AGENT, CATALOG_QUERY, Names
from projections.catalog import Catalog

log = logging.getLogger(__name__)


async def query(nc: Client, service: str | None = None, tags: list[str] | None = None,
                labels: dict[str, str] | None = None, healthy_only: bool = True,
                prefix: str = "orch", timeout: float = 5.0) -> dict[str, Any]:
    """The `catalog.query` reply: `instances` and the log `position` it answers at."""
    body = {"service": service, "tags": tags or [], "labels": labels or {},
            "healthy_only": healthy_only}
    msg = await nc.request(Names(prefix).command(CATALOG_QUERY), orjson.dumps(body),
                           timeout=timeout)
    reply: dict[str, Any] = orjson.loads(msg.data)
    if not reply.get("ok"):
        raise ValueError(f"catalog query refused: {reply.get('error')}")
    return reply


async def watch(nc: Client, service: str, prefix: str = "orch", healthy_only: bool = False,
                check_every: float = 2.0) -> AsyncGenerator[list[dict[str, Any]], None]:
    """Yield the service's instances now, then again after every change.

    In the manner of a JetStream KV watch: the first answer comes from `catalog.query`,
    every later one from the event log after the position that answer was given at, so
    no change is missed. The log is followed by an ordered consumer; if that consumer
    disappears (NATS restarted) it is re-created from the last position seen.
    """
    names = Names(prefix)
    store = EventStore(nc.jetstream(), names, create_mapper())
    first = await query(nc, service, healthy_only=False, prefix=prefix)
    catalog = Catalog()
    catalog.seed(first["instances"], first["position"])
    after = int(first["position"])
    yield catalog.instances(service, healthy_only=healthy_only)

    events: asyncio.Queue[RecordedEvent] = asyncio.Queue()

    async def collect(event: RecordedEvent) -> None:
        events.put_nowait(event)

    async def subscribe() -> Any:
        return await store.tail(after, collect, names.kind_events(AGENT))

    subscription = await subscribe()
    try:
        while True:
            try:
                event = await asyncio.wait_for(events.get(), check_every)
            except TimeoutError:
                if not await _still_there(subscription):
                    with contextlib.suppress(Exception):
                        await subscription.unsubscribe()
                    subscription = await _retrying(subscribe)
                continue
            if event.position <= after:
                continue  # seen already, before a re-subscription
            after = event.position
            catalog.apply(event)
            if service in catalog.changed:
                yield catalog.instances(service, healthy_only=healthy_only)
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()


async def _still_there(subscription: Any) -> bool:
    try:
        await subscription.consumer_info()
    except (nats.errors.Error, TimeoutError):
        return False
    return True


async def _retrying(subscribe: Any) -> Any:
    delay = 0.1
    while True:
        try:
            return await subscribe()
        except (nats.errors.Error, TimeoutError) as exc:
            log.debug("catalog watch re-subscribe failed: %r", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
