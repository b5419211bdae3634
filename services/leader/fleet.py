"""Placement's view of the agents: the projections plus assignments still in flight,
kept as an index that changes with them.

The projections tell it which agents changed (an agent event; a change of the open tasks
they hold), and it remakes only those candidates: a round of placements then costs the
tasks it places, not the fleet (with 2,000 agents, remaking every candidate each round
was most of the orchestrator's work; `python -m bench profile`).
"""

from __future__ import annotations

from collections import Counter

from domain.tasks.placement import Candidate, Strategy
from domain.tasks.plan import Plan
from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentHealth, AgentView
from projections.position import Position

_UNWRITTEN = 2**63  # the position of a placement whose append has not returned yet


class Fleet:
    """An assignment this process made counts against its agent at once, before the
    projection has applied it, so a burst of placements cannot overfill an agent."""

    def __init__(self, agents: AgentHealth, board: TaskBoard, position: Position) -> None:
        self.agents = agents
        self.board = board
        self.position = position
        self._in_flight: dict[str, tuple[str, int]] = {}  # task id -> (agent id, position)
        self._extra: dict[str, int] = {}  # agent id -> its placements in flight
        # Placements from the queue in flight, by concurrency key, and each one's key:
        # counted against the key's limits until the projections apply them.
        self.keys_in_flight: Counter[str] = Counter()
        self._key_of: dict[str, str] = {}
        # round_robin's cursor, the agent chosen last: placements and moves share it.
        self.cursor = ""
        self._candidates: dict[str, Candidate] = {}  # the healthy agents
        self._free = 0  # their free capacity, in all
        self._changed: set[str] = set()
        self._made_from: dict[str, AgentView] | None = None  # the agents dict indexed
        self._plans: dict[Strategy, Plan] = {}
        agents.on_change = self._changed.add
        board.on_load_change = self._changed.add

    # --- placements in flight ---------------------------------------------------------

    def note(self, task_id: str, agent_id: str, position: int) -> None:
        key = self._key_of.get(task_id)  # written now: still counted against its key
        self._leave(task_id)
        self._enter(task_id, agent_id, position)
        if key is not None:
            self._key_of[task_id] = key
            self.keys_in_flight[key] += 1

    def reserve(self, task_id: str, agent_id: str, key: str = "") -> None:
        """Count a placement being written against its agent (and its concurrency key,
        if given) until it is settled."""
        self.note(task_id, agent_id, _UNWRITTEN)
        if key:
            self._key_of[task_id] = key
            self.keys_in_flight[key] += 1

    def release(self, task_id: str) -> None:
        self._leave(task_id)

    def forget_unwritten(self) -> None:
        """Drop reservations whose writes will never report back: those of a leadership
        term that ended while they were being written."""
        for task_id in [t for t, (_, p) in self._in_flight.items() if p == _UNWRITTEN]:
            self._leave(task_id)

    def in_flight(self, task_id: str) -> bool:
        self._settle()
        return task_id in self._in_flight

    def reserved(self, task_id: str) -> bool:
        """`in_flight` as of the last settling (refresh() settles): for a loop that
        does not await, where settling per task would cost the in-flight count each."""
        return task_id in self._in_flight

    def _enter(self, task_id: str, agent_id: str, position: int) -> None:
        self._in_flight[task_id] = (agent_id, position)
        self._extra[agent_id] = self._extra.get(agent_id, 0) + 1
        self._changed.add(agent_id)

    def _leave(self, task_id: str) -> None:
        held = self._in_flight.pop(task_id, None)
        if held is None:
            return
        key = self._key_of.pop(task_id, None)
        if key is not None:
            left_of_key = self.keys_in_flight[key] - 1
            if left_of_key > 0:
                self.keys_in_flight[key] = left_of_key
            else:
                del self.keys_in_flight[key]
            self.board.waiting.unpark(key)
        agent_id = held[0]
        left = self._extra[agent_id] - 1
        if left:
            self._extra[agent_id] = left
        else:
            del self._extra[agent_id]
        self._changed.add(agent_id)

    def _settle(self) -> None:
        """Placements the projections have applied count there now, not here."""
        applied = self.position.value
        for task_id in [t for t, (_, p) in self._in_flight.items() if p <= applied]:
            self._leave(task_id)

    # --- the index --------------------------------------------------------------------

    def refresh(self) -> None:
        """Make the candidates of the agents that changed again (all of them when the
        projections were replaced, as by a snapshot's restore)."""
        self._settle()
        if self._made_from is not self.agents.agents:
            self._made_from = self.agents.agents
            self._candidates, self._free, self._plans = {}, 0, {}
            changed: set[str] | list[str] = list(self.agents.agents)
            self._changed.clear()
        else:  # the same set stays: the projections hold its `add`
            changed = list(self._changed)
            self._changed.clear()
        for agent_id in changed:
            self._remake(agent_id)

    def _remake(self, agent_id: str) -> None:
        view = self.agents.agents.get(agent_id)
        old = self._candidates.pop(agent_id, None)
        if old is not None:
            self._free -= max(0, old.free)
        new = None
        if view is not None and view.status == "healthy":
            new = self._candidates[agent_id] = Candidate(
                agent_id, view.incarnation, frozenset(view.capabilities), view.capacity,
                self.board.load(agent_id) + self._extra.get(agent_id, 0), view.status,
                frozenset(view.kinds), view.labels)
            self._free += max(0, new.free)
        for plan in self._plans.values():
            plan.update(agent_id, new)

    @property
    def free(self) -> int:
        """Free capacity of the healthy agents, in all, as of the last refresh."""
        return self._free

    def plan(self, strategy: Strategy) -> Plan:
        """The placement plan, up to date; kept from round to round."""
        self.refresh()
        plan = self._plans.get(strategy)
        if plan is None:
            plan = self._plans[strategy] = Plan(dict(self._candidates), strategy)
        return plan

    def candidates(self) -> list[Candidate]:
        self.refresh()
        return list(self._candidates.values())
