"""Flow control's pure rules: token buckets, rates, the limits projection, and the
waiting queue's fairness and lanes (projections/board/waiting.py)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.errors import CommandRefused
from domain.limits.limit import KeyLimit, LimitScope, TokenBucket, check_values, parse_rate
from domain.tasks.placement import NO_LABELS, Candidate, choose, why_waiting
from projections.board.waiting import WaitingTasks
from projections.limits import Limits
from projections.log_event import LogEvent


class TestRates:
    @pytest.mark.parametrize(("text", "per_s"), [
        ("600/min", 10.0), ("10/s", 10.0), ("5000/hour", 5000 / 3600), ("1.5 / sec", 1.5)])
    def test_a_rate_reads_as_placements_per_second(self, text: str, per_s: float) -> None:
        assert math.isclose(parse_rate(text), per_s)

    @pytest.mark.parametrize("text", ["600", "0/min", "-1/s", "ten/min", "5/day", ""])
    def test_anything_else_is_refused(self, text: str) -> None:
        with pytest.raises(ValueError):
            parse_rate(text)

    def test_a_scope_takes_only_its_own_values(self) -> None:
        check_values(LimitScope.KEY, {"concurrency": 2, "rate_per_s": 1.0, "burst": 3})
        with pytest.raises(CommandRefused, match="does not take weight"):
            check_values(LimitScope.KEY, {"weight": 2.0})
        with pytest.raises(CommandRefused, match="burst"):
            check_values(LimitScope.KEY, {"burst": 3})


class TestTokenBucket:
    def test_a_full_bucket_gives_its_burst_then_one_per_interval(self) -> None:
        limit = KeyLimit(rate_per_s=2.0, burst=3)
        bucket = TokenBucket.full(limit)
        for _ in range(3):
            assert bucket.available(limit, 100.0) >= 1.0
            bucket.take(limit, 100.0)
        assert bucket.available(limit, 100.0) == 0.0
        assert bucket.next_token_at(limit, 100.0) == pytest.approx(100.5)
        assert bucket.available(limit, 100.5) == pytest.approx(1.0)
        assert bucket.available(limit, 1000.0) == 3.0  # never more than its size

    def test_placements_in_flight_push_the_next_token_back(self) -> None:
        limit = KeyLimit(rate_per_s=1.0, burst=1)
        bucket = TokenBucket(0.0, 10.0)
        assert bucket.next_token_at(limit, 10.0, pending=0) == pytest.approx(11.0)
        assert bucket.next_token_at(limit, 10.0, pending=2) == pytest.approx(13.0)


def limit_event(position: int, limit: str, values: dict[str, Any],
                name: str = "Set") -> LogEvent:
    class Event:
        kind = "limit"
        aggregate_id = limit
        recorded_at = datetime(2026, 1, 1, tzinfo=UTC)

        def data(self) -> dict[str, Any]:
            return {"values": values}

    event: Any = Event()
    event.position, event.name = position, name
    return event


class TestLimitsProjection:
    def test_limits_are_as_the_log_last_set_them(self) -> None:
        limits = Limits(max_unfinished_per_submitter=100)
        limits.apply(limit_event(1, "key:openai", {"concurrency": 2}))
        limits.apply(limit_event(2, "default:key", {"concurrency": 5}))
        limits.apply(limit_event(3, "fairness:team-a", {"weight": 3.0}))
        limits.apply(limit_event(4, "submitter:ci", {"max_unfinished": 7}))
        assert limits.key_limit("openai") == KeyLimit(concurrency=2)
        assert limits.key_limit("other") == KeyLimit(concurrency=5)
        assert limits.weight("team-a") == 3.0 and limits.weight("team-b") == 1.0
        assert limits.quota("ci") == 7 and limits.quota("someone") == 100
        limits.apply(limit_event(5, "key:openai", {}, "Changed"))  # lifted
        assert limits.key_limit("openai") == KeyLimit(concurrency=5)
        assert [row["name"] for row in limits.listing()] == ["key", "team-a", "ci"]


class TestFairness:
    def test_fairness_keys_take_turns_within_a_priority(self) -> None:
        waiting = WaitingTasks()
        for i in range(100):
            waiting.add(f"big-{i}", 0, i, fairness_key="big")
        for i in range(3):
            waiting.add(f"small-{i}", 0, 1000 + i, fairness_key="small")
        order = list(waiting.due(now=0.0))
        assert len(order) == 103
        assert [order.index(f"small-{i}") for i in range(3)] == [1, 3, 5]

    def test_priority_comes_before_turns(self) -> None:
        waiting = WaitingTasks()
        waiting.add("low-a", 0, 1, fairness_key="a")
        waiting.add("high-b", 5, 2, fairness_key="b")
        waiting.add("high-a", 5, 3, fairness_key="a")
        assert next(iter(waiting.due(now=0.0))) == "high-b"

    def test_weights_share_the_turns(self) -> None:
        waiting = WaitingTasks(weight=lambda key: 3.0 if key == "heavy" else 1.0)
        for i in range(40):
            waiting.add(f"h{i}", 0, i, fairness_key="heavy")
            waiting.add(f"l{i}", 0, 100 + i, fairness_key="light")
        first = list(waiting.due(now=0.0))[:20]
        assert sum(t.startswith("h") for t in first) == 15

    def test_turns_used_in_the_log_carry_over_to_the_next_round(self) -> None:
        waiting = WaitingTasks()
        for i in range(5):
            waiting.add(f"a{i}", 0, i, fairness_key="a")
            waiting.add(f"b{i}", 0, 10 + i, fairness_key="b")
        waiting.charge("a")  # the log placed one of a's
        waiting.discard("a0")
        assert next(iter(waiting.due(now=0.0))) == "b0"

    def test_a_newcomer_joins_at_the_current_turn_not_behind_a_backlog(self) -> None:
        waiting = WaitingTasks()
        for i in range(50):
            waiting.add(f"old{i}", 0, i, fairness_key="old")
        for i in range(30):  # the log served 30 of them
            waiting.charge("old")
            waiting.discard(f"old{i}")
        waiting.add("new", 0, 100, fairness_key="new")
        order = list(waiting.due(now=0.0))
        assert order.index("new") <= 1


class TestLanes:
    def test_a_blocked_key_sets_its_whole_lane_aside_and_the_rest_is_served(self) -> None:
        waiting = WaitingTasks()
        for i in range(5):
            waiting.add(f"k{i}", 0, i, concurrency_key="k")
        waiting.add("free", 0, 10)
        walk = waiting.round(now=0.0)
        seen = []
        while (task_id := walk.next()) is not None:
            seen.append(task_id)
            if task_id.startswith("k"):
                walk.block()
            else:
                walk.served()
        walk.close()
        assert seen == ["k0", "free"]  # one look at the key, then past it
        assert list(waiting.due(now=0.0)) == ["k0", "k1", "k2", "k3", "k4", "free"]

    def test_a_task_stepped_over_does_not_hold_back_its_lane(self) -> None:
        waiting = WaitingTasks()
        for i in range(3):
            waiting.add(f"t{i}", 0, i)
        walk = waiting.round(now=0.0)
        assert walk.next() == "t0"
        walk.skip()
        assert walk.next() == "t1"
        walk.served()
        assert walk.next() == "t2"
        walk.close()
        assert list(waiting.due(now=0.0)) == ["t0", "t1", "t2"]  # whole again


class TestSelectors:
    def agents(self) -> list[Candidate]:
        return [Candidate("us-1", 1, frozenset(), 4, 0, "healthy", labels={"zone": "us"}),
                Candidate("eu-1", 1, frozenset(), 4, 3, "healthy", labels={"zone": "eu"}),
                Candidate("eu-2", 1, frozenset(), 4, 4, "healthy", labels={"zone": "eu"})]

    def test_a_selector_excludes_agents_without_its_labels(self) -> None:
        chosen = choose(self.agents(), [], selector=(("zone", "eu"),))
        assert chosen is not None and chosen.agent_id == "eu-1"
        assert choose(self.agents(), [], selector=(("zone", "ap"),)) is None

    def test_prefer_ranks_without_excluding(self) -> None:
        chosen = choose(self.agents(), [], prefer=(("zone", "eu"),))
        assert chosen is not None and chosen.agent_id == "eu-1"  # though us-1 is idler
        full = [*self.agents()[:1], Candidate("eu-3", 1, frozenset(), 1, 1, "healthy",
                                              labels={"zone": "eu"})]
        chosen = choose(full, [], prefer=(("zone", "eu"),))
        assert chosen is not None and chosen.agent_id == "us-1"

    def test_why_names_the_selector_and_counts_the_agents_it_excludes(self) -> None:
        reasons = why_waiting(self.agents(), [], selector=(("zone", "ap"),))
        [excluded] = [r for r in reasons if r.code == NO_LABELS]
        assert excluded.count == 3 and "zone=ap" in excluded.message
