"""What an applied event sets off in this process, declared in one table.

The projections apply every event (projections/). Some events also wake a component:
which ones, and what they wake, is written here and nowhere else, so "what happens
after E" is read in one place. Applying is on a rebuild's hot path (millions of events),
so the table is compiled once into the callables of each event type.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from infra import names as n
from projections.fleet.catalog import Catalog
from projections.log_event import LogEvent

# The health monitor starts the deadlines of an agent's new incarnation.
WATCH_INCARNATION = "watch-incarnation"
# The dispatcher looks again: an agent's capacity or the queue changed.
DISPATCH = "dispatch"
# A finished task's outcome goes to its submitter (services/commands/results.py).
TELL_SUBMITTER = "tell-submitter"

TABLE: Mapping[str, tuple[str, ...]] = {
    "Registered": (WATCH_INCARNATION, DISPATCH),
    "Reregistered": (WATCH_INCARNATION, DISPATCH),
    "Recovered": (DISPATCH,),
    "DrainStarted": (DISPATCH,),
    "Undrained": (DISPATCH,),
    "Deregistered": (DISPATCH,),
    "Submitted": (DISPATCH,),
    "Requeued": (DISPATCH,),
    # A move off an agent may lengthen its unaccepted streak (services/leader/unresponsive.py)
    "Reassigned": (DISPATCH,),
    "Readmitted": (DISPATCH,),
    "Completed": (DISPATCH, TELL_SUBMITTER),
    "Failed": (DISPATCH,),
    "DeadLettered": (DISPATCH, TELL_SUBMITTER),
    "Cancelled": (DISPATCH, TELL_SUBMITTER),
}

Reaction = Callable[[LogEvent], None]


class Reactions:
    """The runner's `on_applied`: the table's reactions to each event; for events applied
    live (not a rebuild's replay) the task metrics and the log notice; and after a change
    to the catalog, its change feed."""

    def __init__(self, named: Mapping[str, Reaction], *, live: Callable[[], bool],
                 count_task_event: Reaction, notice_position: Callable[[int], None],
                 catalog: Catalog, feed: Callable[[LogEvent], Awaitable[None]],
                 table: Mapping[str, Sequence[str]] = TABLE) -> None:
        self._by_type = {name: tuple(named[reaction] for reaction in reactions)
                         for name, reactions in table.items()}
        self._live = live
        self._count_task_event = count_task_event
        self._notice_position = notice_position
        self._catalog = catalog
        self._feed = feed

    async def on_applied(self, event: LogEvent) -> None:
        live = self._live()
        if live and event.kind == n.TASK:
            self._count_task_event(event)
        for reaction in self._by_type.get(event.name, ()):
            reaction(event)
        if live:
            self._notice_position(event.position)
        if self._catalog.changed:  # else nothing to publish: no call per replayed event
            await self._feed(event)
