"""One round of placement decisions: which waiting task goes to which agent, in serving
order, under the keys' limits. The leader's dispatcher writes what it decides
(services/leader/dispatcher.py); what-if replays a recorded window through the same
function under other limits (services/audit/what_if_limits.py): one implementation.

Pure: it reads the board's tasks and a placement plan, and changes only the round's walk
and the plan's loads (each choice sees the loads the ones before it add).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from domain.tasks.placement import Candidate
from domain.tasks.plan import Plan
from projections.board.key_gate import AT_CONCURRENCY, Hold, KeyGate
from projections.board.task_view import TaskView
from projections.board.waiting import Round

# Placements decided at most per round: the dispatcher writes them concurrently.
MOST_PER_ROUND = 64
# A placement's causation id: this, the log position the deciding board stood at, and
# the decision's number in its leader's term (`dispatch-<position>.<n>`).
DISPATCH_CAUSE = "dispatch-"


def dispatch_cause(basis: int, number: int) -> str:
    return f"{DISPATCH_CAUSE}{basis}.{number}"


def parse_dispatch_cause(cause: str | None) -> tuple[int, int] | None:
    """(board position, number) of a placement's cause; None for another cause. A cause
    of before numbers (`dispatch-<position>`) reads as number 0."""
    if not cause or not cause.startswith(DISPATCH_CAUSE):
        return None
    basis, _, number = cause[len(DISPATCH_CAUSE):].partition(".")
    if not basis.isdigit() or (number and not number.isdigit()):
        return None
    return int(basis), int(number or 0)


@dataclass(frozen=True)
class Decision:
    view: TaskView
    agent: Candidate
    seen: list[Candidate]  # what the placement records it looked at


@dataclass
class Decided:
    decisions: list[Decision] = field(default_factory=list)
    holds: list[tuple[str, Hold]] = field(default_factory=list)  # (key, why) per lane held
    token_at: float | None = None  # when the earliest key held for its rate may place
    more: bool = False  # stopped at MOST_PER_ROUND with tasks left to look at
    looked_at_all: bool = False  # every ready task was looked at (none left unseen)
    cursor: str = ""  # round robin's: the agent chosen last


def decide(walk: Round, tasks: Mapping[str, object], make_plan: Callable[[], tuple[Plan, int]],
           gate: KeyGate, now: float, cursor: str = "",
           reserved: Callable[[str], bool] = lambda task_id: False,
           most: int = MOST_PER_ROUND) -> Decided:
    """Choose agents for the tasks in serving order while capacity lasts. A task that
    cannot be placed now never holds back the ones behind it: a key at its limit sets its
    lane aside, a task no agent can take is stepped over. `make_plan` gives the plan and
    the fleet's free capacity, asked for only once a task is due (no O(agents) work
    before); `reserved` names tasks whose placement is being written already."""
    decided = Decided(cursor=cursor)
    plan: Plan | None = None
    free = 0
    placed_of_key: Counter[str] = Counter()  # this round's, not yet counted by the gate
    while True:
        task_id = walk.next()
        if task_id is None:
            decided.looked_at_all = True
            break
        if plan is None:
            plan, free = make_plan()
        if free <= 0:
            break  # the fleet is full: the rest of the queue waits for capacity
        if len(decided.decisions) >= most:
            decided.more = True
            break
        view: TaskView = tasks[task_id]  # type: ignore[assignment]  # waiting: a view
        if reserved(task_id):
            walk.skip()
            continue
        key = view.concurrency_key
        hold = gate.holds(key, now, placed_of_key[key]) if key else None
        if hold is not None:
            if hold.next_at is not None:
                decided.token_at = min(decided.token_at or hold.next_at, hold.next_at)
            decided.holds.append((key, hold))
            if hold.code == AT_CONCURRENCY:
                walk.park()
            else:
                walk.block()
            continue
        agent = plan.choose(view.requires, view.kind, decided.cursor, view.selector,
                            view.prefer)
        if agent is None:
            walk.skip()  # a later task may need less; this one waits for capacity
            continue
        seen = plan.considered()
        decided.cursor = agent.agent_id
        plan.take(agent.agent_id)
        walk.served()
        free -= 1
        if key:
            placed_of_key[key] += 1
        decided.decisions.append(Decision(view, agent, seen))
    return decided
