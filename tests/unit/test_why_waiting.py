"""why_waiting: every agent counted under the first placement check it fails."""

from __future__ import annotations

from typing import get_args

import pytest

from domain.tasks.placement import Candidate, why_waiting
from services.http.models import WaitReason


def agent(agent_id: str, caps: str = "cpu", status: str = "healthy", load: int = 0,
          capacity: int = 2, kinds: str = "") -> Candidate:
    return Candidate(agent_id, 1, frozenset(caps.split(",")) - {""}, capacity, load, status,
                     frozenset(kinds.split(",")) - {""})


CASES = [
    ("nobody, needs tpu", [], ["tpu"], None,
     [("no_capability", 0, "no live agent has capability tpu")]),
    ("nobody, needs nothing", [], [], None, [("no_agents", 0, "no agent is registered")]),
    ("a cpu agent, needs tpu", [agent("a")], ["tpu"], None,
     [("no_capability", 1, "no live agent has capability tpu")]),
    ("needs two capabilities nobody has", [agent("a")], ["tpu", "gpu"], None,
     [("no_capability", 1, "no live agent has capabilities gpu, tpu")]),
    ("each capability somewhere, never both", [agent("a", "gpu"), agent("b", "tpu")],
     ["tpu", "gpu"], None, [("no_capability", 2, "2 agents lack capabilities gpu, tpu")]),
    ("the only tpu agent is dead", [agent("a"), agent("b", "tpu", "dead")], ["tpu"], None,
     [("no_capability", 1, "no live agent has capability tpu"),
      ("not_healthy", 1, "1 capable agent is not healthy (1 dead)")]),
    ("the tpu agents are suspect or dead",
     [agent("a", "tpu", "suspect"), agent("b", "tpu", "dead"), agent("c", "tpu", "suspect")],
     ["tpu"], None, [("not_healthy", 3, "3 capable agents are not healthy (2 suspect, 1 dead)")]),
    ("a left agent is not counted", [agent("a", "tpu", "left")], ["tpu"], None,
     [("no_capability", 0, "no live agent has capability tpu")]),
    ("all full", [agent("a", load=2), agent("b", load=2), agent("c", load=3)], [], None,
     [("at_capacity", 3, "3 capable agents are at capacity")]),
    ("draining", [agent("a", status="draining"), agent("b", status="draining")], ["cpu"], None,
     [("draining", 2, "2 capable agents are draining")]),
    ("nobody runs the kind", [agent("a", kinds="sleep")], [], "echo",
     [("kind_not_run", 1, "no live agent runs kind echo")]),
    ("no capable agent runs the kind", [agent("a", "tpu", kinds="sleep"), agent("b")],
     ["tpu"], "echo",
     [("no_capability", 1, "1 agent lacks capability tpu"),
      ("kind_not_run", 1, "no live capable agent runs kind echo")]),
    ("one runs the kind but is full", [agent("a", kinds="sleep"), agent("b", load=2)], [],
     "echo", [("kind_not_run", 1, "1 capable agent does not run kind echo"),
              ("at_capacity", 1, "1 capable agent is at capacity")]),
    ("an agent of any kind can take it", [agent("a")], [], "echo",
     [("placeable", 1, "1 agent can take it now")]),
    ("a mixed fleet", [agent("a", "gpu"), agent("b", "tpu", "dead"),
                       agent("c", "tpu", "draining"), agent("d", "tpu", load=2),
                       agent("e", "tpu"), agent("f", "tpu", "left")], ["tpu"], None,
     [("no_capability", 1, "1 agent lacks capability tpu"),
      ("not_healthy", 1, "1 capable agent is not healthy (1 dead)"),
      ("draining", 1, "1 capable agent is draining"),
      ("at_capacity", 1, "1 capable agent is at capacity"),
      ("placeable", 1, "1 agent can take it now")]),
]


@pytest.mark.parametrize(("fleet", "requires", "kind", "expected"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_why_waiting(fleet: list[Candidate], requires: list[str], kind: str | None,
                     expected: list[tuple[str, int, str]]) -> None:
    reasons = why_waiting(fleet, requires, kind)

    assert [(r.code, r.count, r.message) for r in reasons] == expected
    # Every agent that has not left is counted once.
    assert sum(r.count for r in reasons) == sum(c.status != "left" for c in fleet)


def test_the_read_api_documents_every_reason_code() -> None:
    codes = {r.code for case in CASES for r in why_waiting(case[1], case[2], case[3])}
    assert codes == set(get_args(WaitReason.model_fields["code"].annotation))
