"""What the health monitor knows of each agent, and when it is to look at each next.

One record per agent holds both, in one dict whose key is made when the agent is first
noticed (its registration applied, or the projections restored at start-up; None until
anything is known) and kept for good: a new leader's enrolment then grows nothing
fleet-sized. It used to fill two dicts from nothing
(the records, and the next looks): at 500,000 agents both outgrew 2^19 slots in the same
part, and each resize allocated about 21 MB and copied 349,000 entries in one turn of
the loop. That was 25 ms and 7,500 fresh pages, and 50 ms and more where fresh pages
are slow to come (9.5 us a page was measured here: a virtual machine's memory the guest
has not touched yet).
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterator
from dataclasses import dataclass

# The incarnation of a record noticed before anything was heard of the agent: none
# (they start at 1), so the first heartbeat or look sets what it says.
UNHEARD = 0


@dataclass(slots=True)
class Seen:
    """The agent's current incarnation as last heard, and its next look."""

    incarnation: int
    at: float
    heartbeat_seq: int = 0  # stream sequence of the last heartbeat applied
    streak: int = 0  # heartbeats in a row, for success_before_passing
    # When it is to be looked at next, if `term` is the schedule's current term: a look
    # of an earlier lead (its heap is gone) means none.
    next_look: float = 0.0
    term: int = 0


class LookSchedule:
    """When each agent is to be looked at next, as a heap: a tick costs the agents that
    are due, not the fleet. A deadline only ever moves later (a heartbeat, a restart of
    deadlines), so an agent looked at early is simply put back at its new time;
    heartbeats of healthy agents never touch the heap."""

    def __init__(self) -> None:
        self.seen: dict[str, Seen | None] = {}
        self._due: list[tuple[float, str]] = []
        # Each lead is a term; ending one forgets its looks without a pass over the fleet
        # (500,000 records: a stall of its own as leadership is lost).
        self._term = 1

    def notice(self, agent_id: str) -> None:
        """The agent has a place among the records from now on."""
        self.seen.setdefault(agent_id, None)

    def notice_all(self, agent_ids: Collection[str]) -> None:
        """Each of these agents has a place among the records from now on: the dict grown
        once, to its size (one by one it grows by doubling, 114 ms for 500,000 here). A
        matter of speed only: a record is made when first needed anyway."""
        if len(self.seen) >= len(agent_ids):
            return  # noticed one by one already, as a replay applied their registrations
        places: dict[str, Seen | None] = dict.fromkeys(agent_ids)
        places.update(self.seen)  # what is known already is kept
        self.seen.update(places)

    def _record(self, agent_id: str) -> Seen:
        seen = self.seen.get(agent_id)
        if seen is None:  # a value replaced, not a key added, once the agent was noticed
            seen = self.seen[agent_id] = Seen(UNHEARD, 0.0)
        return seen

    def heard(self, agent_id: str, incarnation: int, at: float) -> Seen:
        """The agent's record, of this incarnation: first heard `at` if it was of none or
        of another (the record is kept, its next look too)."""
        seen = self._record(agent_id)
        if seen.incarnation != incarnation:
            seen.incarnation = incarnation
            seen.at = at
            seen.heartbeat_seq = 0
            seen.streak = 0
        return seen

    def look_at(self, agent_id: str, when: float) -> None:
        """Look at the agent at `when`, unless a look is already due by then."""
        seen = self._record(agent_id)
        if seen.term == self._term and seen.next_look <= when:
            return
        seen.next_look = when
        seen.term = self._term
        heapq.heappush(self._due, (when, agent_id))

    @property
    def first_due(self) -> float | None:
        return self._due[0][0] if self._due else None

    def due(self, now: float, most: int) -> Iterator[str]:
        """The agents due by `now`, at most `most` of them, each taken off the schedule
        (looks superseded by earlier ones are skipped)."""
        due = self._due
        taken = 0
        while due and due[0][0] <= now and taken < most:
            taken += 1
            when, agent_id = heapq.heappop(due)
            seen = self.seen.get(agent_id)
            if seen is None or seen.term != self._term or seen.next_look != when:
                continue
            seen.term = 0  # off the schedule until looked at again
            yield agent_id

    def scheduled(self, agent_id: str) -> float | None:
        """When the agent is to be looked at next, if it is."""
        seen = self.seen.get(agent_id)
        if seen is None or seen.term != self._term:
            return None
        return seen.next_look

    def end_term(self) -> list[tuple[float, str]]:
        """Forget every look (leadership ended): the next lead enrols the fleet anew.
        Returns the heap for the caller to drop a part at a time: 500,000 entries freed
        at once held the loop for 50 ms."""
        ended, self._due = self._due, []
        self._term += 1
        return ended
