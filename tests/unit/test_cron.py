"""The cron evaluator (domain/schedules/cron.py): parsing, refusals, and the next slot after a time,
checked against slots worked out by hand and, for many expressions, against a minute by
minute walk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.schedules.cron import Cron, CronError, every_next_after


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[arg-type,misc]


def when(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


class TestParse:
    def test_reads_lists_ranges_steps_and_names(self) -> None:
        cron = Cron.parse("0,30 9-17/2 */10 jan-mar,DEC mon-fri")
        assert cron.minutes == {0, 30}
        assert cron.hours == {9, 11, 13, 15, 17}
        assert cron.days == {1, 11, 21, 31}
        assert cron.months == {1, 2, 3, 12}
        assert cron.weekdays == {1, 2, 3, 4, 5}

    def test_a_start_with_a_step_runs_to_the_end(self) -> None:
        assert Cron.parse("5/15 * * * *").minutes == {5, 20, 35, 50}

    def test_seven_is_sunday(self) -> None:
        assert Cron.parse("0 0 * * 7").weekdays == {0}

    def test_macros(self) -> None:
        assert Cron.parse("@hourly").minutes == {0}
        assert Cron.parse("@daily").hours == {0}
        assert Cron.parse("@weekly").weekdays == {0}

    @pytest.mark.parametrize("text", [
        "", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *",
        "* * 32 * *", "* * * 13 *", "* * * * 8", "5-1 * * * *", "*/0 * * * *",
        "a * * * *", "1,,2 * * * *", "-1 * * * *", "* * * foo *", "@often",
        "0 0 30 2 *", "0 0 31 4,6,9,11 *",
    ])
    def test_refuses(self, text: str) -> None:
        with pytest.raises(CronError):
            Cron.parse(text)


class TestNextAfter:
    @pytest.mark.parametrize(("text", "after", "expected"), [
        ("*/5 * * * *", at(2026, 1, 1, 0, 3), at(2026, 1, 1, 0, 5)),
        ("*/5 * * * *", at(2026, 1, 1, 0, 5), at(2026, 1, 1, 0, 10)),  # strictly after
        ("*/5 * * * *", at(2026, 1, 1, 0, 4, 59), at(2026, 1, 1, 0, 5)),
        ("0 3 * * *", at(2026, 12, 31, 4, 0), at(2027, 1, 1, 3, 0)),  # over the year
        ("0 0 29 2 *", at(2026, 3, 1), at(2028, 2, 29)),  # the next leap day
        ("0 0 1 * *", at(2026, 1, 31, 12), at(2026, 2, 1)),
        ("30 12 * * mon", at(2026, 12, 7, 12, 31), at(2026, 12, 14, 12, 30)),  # a Monday
        # Both day fields restricted: either one fires (the 13th, or any Friday).
        ("0 0 13 * fri", at(2026, 2, 1), at(2026, 2, 6)),
        ("0 0 13 * fri", at(2026, 2, 6), at(2026, 2, 13)),
        # A day-of-month written from *: both must hold (Vixie cron).
        ("0 0 */2 * fri", at(2026, 2, 1), at(2026, 2, 13)),
    ])
    def test_finds_the_next_slot(self, text: str, after: float, expected: float) -> None:
        assert when(Cron.parse(text).next_after(after)) == when(expected)

    @settings(max_examples=40, deadline=None)
    @given(text=st.sampled_from([
        "* * * * *", "*/7 * * * *", "15 */3 * * *", "0 12 * * sat,sun", "0 0 1,8,15,22 * *",
        "*/20 8-10 * * *", "0 0 13 * 5", "0 6 */3 * 1-5"]),
        start=st.integers(int(at(2024, 1, 1)), int(at(2027, 1, 1))))
    def test_agrees_with_a_walk_minute_by_minute(self, text: str, start: int) -> None:
        cron = Cron.parse(text)
        found = cron.next_after(start)
        assert found is not None and found > start
        minute = datetime.fromtimestamp(start, UTC).replace(second=0) + timedelta(minutes=1)
        while minute.timestamp() < found:
            assert not _fires(cron, minute), (text, minute)
            minute += timedelta(minutes=1)
        assert _fires(cron, minute)


def _fires(cron: Cron, minute: datetime) -> bool:
    dom, dow = minute.day in cron.days, (minute.weekday() + 1) % 7 in cron.weekdays
    day = dom and dow if (cron.any_day or cron.any_weekday) else dom or dow
    return (minute.minute in cron.minutes and minute.hour in cron.hours
            and minute.month in cron.months and day)


class TestEvery:
    def test_slots_are_multiples_since_the_epoch(self) -> None:
        assert every_next_after(3600, at(2026, 1, 1, 10, 59, 59)) == at(2026, 1, 1, 11)
        assert every_next_after(3600, at(2026, 1, 1, 11)) == at(2026, 1, 1, 12)
        assert every_next_after(1, 10.5) == 11
