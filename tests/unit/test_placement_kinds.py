"""Placement matches a task's kind: agents that declared kinds get only those."""

from __future__ import annotations

from domain.tasks.placement import Candidate, choose, is_eligible


def agent(agent_id: str, kinds: frozenset[str] = frozenset(), load: int = 0) -> Candidate:
    return Candidate(agent_id, 1, frozenset({"cpu"}), 4, load, "healthy", kinds)


class TestKinds:
    def test_an_agent_with_no_declared_kinds_runs_any(self) -> None:
        assert is_eligible(agent("a"), ["cpu"], "echo")

    def test_an_agent_that_declared_kinds_runs_only_those(self) -> None:
        resizer = agent("a", frozenset({"resize"}))
        assert is_eligible(resizer, [], "resize")
        assert not is_eligible(resizer, [], "echo")

    def test_the_kind_outranks_a_lighter_load(self) -> None:
        idle_resizer = agent("a", frozenset({"resize"}))
        busy_echoer = agent("b", frozenset({"echo"}), load=3)
        chosen = choose([idle_resizer, busy_echoer], [], kind="echo")
        assert chosen is not None and chosen.agent_id == "b"

    def test_no_agent_runs_the_kind(self) -> None:
        assert choose([agent("a", frozenset({"resize"}))], [], kind="echo") is None
