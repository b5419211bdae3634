"""Service discovery for Python clients: query the catalog, or watch a service.

Both speak the protocol only: `<prefix>.catalog.query` and
`<prefix>.catalog.changes.<service>`, what an agent or a reader may use with
ORCH_AUTH=on. Neither reads the orchestrator's event stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any

import nats.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from sdk.connection import flush_subscriptions, request
from sdk.protocol import CATALOG_QUERY, CatalogChange, Subjects

log = logging.getLogger(__name__)


async def query(nc: Client, service: str | None = None, tags: list[str] | None = None,
                labels: dict[str, str] | None = None, healthy_only: bool = True,
                prefix: str = "orch", timeout: float = 5.0,
                identity: str | None = None) -> dict[str, Any]:
    """The `catalog.query` reply: `instances` and the log `position` it answers at.

    With `identity`, the reply comes to that identity's inbox, `_INBOX.<identity>`, the
    only one it may read with ORCH_AUTH=on; without, to the connection's own inbox.
    """
    subjects = Subjects(prefix)
    body = {"service": service, "tags": tags or [], "labels": labels or {},
            "healthy_only": healthy_only}
    msg = await request(nc, subjects.command(CATALOG_QUERY), orjson.dumps(body), timeout,
                        subjects.inbox_prefix(identity) if identity else None)
    reply: dict[str, Any] = orjson.loads(msg.data)
    if not reply.get("ok"):
        raise ValueError(f"catalog query refused: {reply.get('error')}")
    return reply


class _Newest:
    """The newest instances of the service seen, by log position: an answer or a change
    at a position no later than the one held is stale, and dropped."""

    def __init__(self) -> None:
        self.position = -1
        self.instances: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    def offer(self, position: int, instances: list[dict[str, Any]]) -> None:
        if position <= self.position:
            return
        self.position = position
        self.instances = instances
        self.arrived.set()


async def watch(nc: Client, service: str, prefix: str = "orch", healthy_only: bool = False,
                check_every: float = 2.0, identity: str | None = None,
                timeout: float = 5.0) -> AsyncGenerator[list[dict[str, Any]], None]:
    """Yield the service's instances now, then again whenever they change.

    The first answer comes from `catalog.query`; later ones from the change feed,
    `<prefix>.catalog.changes.<service>`, subscribed to before that query. Each change
    carries all of the service's instances and the log position it was made at, so a
    change older than what is held (a late one, or one from before the query's answer)
    is dropped, and a change that never arrives is made good by the next one.

    The feed is at most once (nothing is published while no orchestrator leads, and
    nothing reaches a watcher while it is disconnected), so the watcher asks
    `catalog.query` again at once after its connection came back, and whenever
    `check_every` seconds pass without a change; an answer at an earlier position than
    what it holds (a lagging orchestrator answered) is ignored. Instances that changed
    without a change the caller can see (`healthy_only` hides it) are not yielded again;
    a caller slower than the changes gets the newest instances, not every step.

    `identity`: make the queries with that identity's inbox (see `query`). The watcher
    raises `nats.errors.ConnectionClosedError` once `nc` is closed.
    """
    subjects = Subjects(prefix)
    newest = _Newest()

    async def on_change(msg: Msg) -> None:
        try:
            change = CatalogChange.parse(msg.data)
        except ValueError as exc:
            log.warning("unreadable catalog change on %s: %s", msg.subject, exc)
            return
        if change.service == service:
            newest.offer(change.position, change.instances)

    async def resync() -> bool:
        try:
            answer = await query(nc, service, healthy_only=False, prefix=prefix,
                                 timeout=timeout, identity=identity)
        except (nats.errors.Error, TimeoutError, ValueError) as exc:
            log.debug("catalog watch could not resynchronise service=%s: %r", service, exc)
            return False
        newest.offer(int(answer["position"]), answer["instances"])
        return True

    feed = await nc.subscribe(subjects.catalog_changes(service), cb=on_change)
    try:
        await flush_subscriptions(nc)  # no change after the answer below is missed
        first = await query(nc, service, healthy_only=False, prefix=prefix, timeout=timeout,
                            identity=identity)
        newest.offer(int(first["position"]), first["instances"])
        reconnects = nc.stats["reconnects"]
        shown = _visible(newest.instances, healthy_only)
        yield shown
        while True:
            quiet = False
            try:
                await asyncio.wait_for(newest.arrived.wait(), check_every)
            except TimeoutError:
                quiet = True
            newest.arrived.clear()
            if nc.is_closed:
                raise nats.errors.ConnectionClosedError
            seen = nc.stats["reconnects"]
            if (quiet or seen != reconnects) and nc.is_connected and await resync():
                reconnects = seen
            visible = _visible(newest.instances, healthy_only)
            if visible != shown:
                shown = visible
                yield visible
    finally:
        with contextlib.suppress(Exception):
            await feed.unsubscribe()


def _visible(instances: list[dict[str, Any]], healthy_only: bool) -> list[dict[str, Any]]:
    return [i for i in instances if i.get("healthy")] if healthy_only else list(instances)
