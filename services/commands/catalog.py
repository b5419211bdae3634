"""Discovery: catalog queries, the catalog at a past position, and the change feed."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from domain.agents.commands import CatalogQuery
from domain.base import CARRIED_FORWARD
from infra.log.port import EventLog
from infra.names import AGENT, Names
from projections.fleet.catalog import Catalog
from projections.log_event import LogEvent
from projections.position import Position

log = logging.getLogger(__name__)

_PAGE = 1000

Publish = Callable[[str, bytes], Awaitable[None]]


class CatalogQueries:
    """Answers `catalog.query` from the live projection."""

    def __init__(self, catalog: Catalog, position: Position) -> None:
        self.catalog = catalog
        self.position = position

    async def query(self, cmd: CatalogQuery, causation_id: str | None = None) -> dict[str, Any]:
        instances = self.catalog.instances(cmd.service, list(cmd.tags), dict(cmd.labels),
                                           cmd.healthy_only)
        return {"ok": True, "service": cmd.service, "position": self.position.value,
                "instances": instances}


async def catalog_at(store: EventLog, names: Names, position: int) -> Catalog:
    """The catalog as it was when the log ended at `position`, rebuilt from the log."""
    catalog = Catalog()
    after = 0
    while True:
        page = await store.read_page(after, _PAGE, names.kind_events(AGENT))
        for event in page.events:
            if event.position > position:
                return catalog
            if event.name != CARRIED_FORWARD:  # a restatement changes no instance
                catalog.apply(event)
        if page.at_end:
            return catalog
        after = page.last


class ChangeFeed:
    """Publishes a service's instances on `<prefix>.catalog.changes.<service>` when they
    change. At most once and live only: a watcher re-queries after a reconnect or a quiet
    spell to catch what it missed (see sdk.catalog.watch)."""

    def __init__(self, catalog: Catalog, names: Names, publish: Publish,
                 enabled: Callable[[], bool]) -> None:
        self.catalog = catalog
        self.names = names
        self.publish = publish
        self.enabled = enabled

    async def on_event(self, event: LogEvent) -> None:
        """Called after each applied event."""
        if not self.catalog.changed or not self.enabled():
            return
        for service in sorted(self.catalog.changed):
            body = orjson.dumps({
                "service": service, "position": event.position, "event": event.name,
                "agent_id": event.aggregate_id,
                "instances": self.catalog.instances(service),
            })
            await self.publish(self.names.catalog_changes(service), body)
