"""The health monitor's schedule of looks: one record per agent holds what was last heard
of it and when it is to be looked at next; a heap orders the looks."""

from __future__ import annotations

import sys

from services.health.schedule import UNHEARD, LookSchedule


def test_the_earliest_look_asked_for_is_kept_and_each_agent_is_taken_once() -> None:
    schedule = LookSchedule()
    schedule.look_at("a", 5.0)
    schedule.look_at("a", 7.0)  # later than the one due: no change
    schedule.look_at("a", 3.0)  # earlier: supersedes it
    schedule.look_at("b", 4.0)
    assert schedule.scheduled("a") == 3.0 and schedule.first_due == 3.0
    assert list(schedule.due(4.5, most=10)) == ["a", "b"]
    assert list(schedule.due(100.0, most=10)) == []  # a's superseded look is skipped
    assert schedule.scheduled("a") is None and schedule.scheduled("b") is None


def test_at_most_the_given_number_of_agents_are_taken_at_once() -> None:
    schedule = LookSchedule()
    for i in range(10):
        schedule.look_at(f"a{i}", float(i))
    assert list(schedule.due(100.0, most=4)) == ["a0", "a1", "a2", "a3"]
    assert list(schedule.due(100.0, most=100)) == [f"a{i}" for i in range(4, 10)]


def test_a_new_term_forgets_the_looks_of_the_last() -> None:
    """A look kept from an earlier lead has no heap entry any more: were it still taken
    for scheduled, a later look asked for would be dropped and the agent never looked at."""
    schedule = LookSchedule()
    schedule.look_at("a", 5.0)
    assert schedule.end_term() == [(5.0, "a")]  # the ended heap, for the caller to drop
    assert schedule.scheduled("a") is None and schedule.first_due is None
    schedule.look_at("a", 9.0)
    assert list(schedule.due(10.0, most=10)) == ["a"]


def test_a_record_is_kept_through_incarnations_with_its_next_look() -> None:
    schedule = LookSchedule()
    first = schedule.heard("a", 1, at=10.0)
    first.heartbeat_seq, first.streak = 7, 3
    schedule.look_at("a", 20.0)
    again = schedule.heard("a", 1, at=15.0)  # the same incarnation: nothing changes
    assert again is first and again.at == 10.0 and again.streak == 3
    newer = schedule.heard("a", 2, at=16.0)  # a new incarnation: heard afresh
    assert newer is first
    assert (newer.incarnation, newer.at, newer.heartbeat_seq, newer.streak) == (2, 16.0, 0, 0)
    assert schedule.scheduled("a") == 20.0


def test_a_look_asked_for_an_agent_unheard_of_makes_its_record() -> None:
    schedule = LookSchedule()
    schedule.notice("a")
    assert schedule.seen == {"a": None}
    schedule.look_at("a", 1.0)
    record = schedule.seen["a"]
    assert record is not None and record.incarnation == UNHEARD
    assert schedule.heard("a", 1, at=2.0).at == 2.0  # the first real word of it


def test_noticing_the_fleet_keeps_what_is_known_and_sizes_the_dict_once() -> None:
    schedule = LookSchedule()
    known = schedule.heard("a0", 3, at=1.0)
    fleet = {f"a{i}": i for i in range(20_000)}
    schedule.notice_all(fleet)
    assert schedule.seen["a0"] is known and len(schedule.seen) == len(fleet)
    assert all(schedule.seen[f"a{i}"] is None for i in range(1, 20_000))
    size = sys.getsizeof(schedule.seen)
    for i in range(20_000):
        schedule.look_at(f"a{i}", float(i))  # values replaced: the table stays as it is
    assert sys.getsizeof(schedule.seen) == size
