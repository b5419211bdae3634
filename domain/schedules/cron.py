"""Cron expressions (five fields, UTC) and fixed intervals: parsed once, evaluated by
pure arithmetic on epoch seconds. No time zones, so no daylight-saving gaps or repeats."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
          "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@hourly": "0 * * * *"}
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAYS = {name.lower(): (i + 1) % 7 for i, name in enumerate(calendar.day_abbr)}  # sun = 0
# (name, lowest, highest, names)
_NO_NAMES: dict[str, int] = {}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, _NO_NAMES), ("hour", 0, 23, _NO_NAMES),
    ("day of month", 1, 31, _NO_NAMES), ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS))
# How far a search for the next slot goes: past it, the expression never fires (the 30th
# of February). 28 years holds every weekday of every 29th of February.
_HORIZON = timedelta(days=366 * 29)


class CronError(ValueError):
    """An expression that is not a valid five-field cron (the message says where)."""


def _value(text: str, field: str, low: int, high: int, names: dict[str, int]) -> int:
    found = names.get(text.lower())
    if found is None:
        if not text.isdigit():
            raise CronError(f"{field}: {text!r} is not a number")
        found = int(text)
    if not low <= found <= high:
        raise CronError(f"{field}: {found} is outside {low}-{high}")
    return found


def _field(text: str, field: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field}: an empty item in {text!r}")
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            step = _value(step_text, field, 1, high, {})
        if body == "*":
            first, last = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            first = _value(a, field, low, high, names)
            last = _value(b, field, low, high, names)
            if first > last:
                raise CronError(f"{field}: the range {body} runs backwards")
        else:
            first = _value(body, field, low, high, names)
            last = high if step_text else first  # 5/15: from 5 on, every 15
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A parsed expression: `minute hour day-of-month month day-of-week`, as Vixie cron
    reads it (lists, ranges, steps, names, 7 for Sunday, the @ macros). When both day
    fields are restricted a day matching either fires; a field written from `*` (`*/2`)
    counts as unrestricted."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool  # the day-of-month field began with *
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        expanded = MACROS.get(text.strip().lower(), text)
        parts = expanded.split()
        if len(parts) != 5:
            raise CronError(f"a cron expression has 5 fields (minute hour day month weekday), "
                            f"not {len(parts)}")
        sets = [_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)]
        weekdays = frozenset(d % 7 for d in sets[4])
        cron = cls(text.strip(), sets[0], sets[1], sets[2], sets[3], weekdays,
                   parts[2].startswith("*"), parts[4].startswith("*"))
        if cron.next_after(0.0) is None:  # 29 years from 1970 hold every combination
            raise CronError(f"{text!r} never fires")
        return cron

    def _day_matches(self, when: datetime) -> bool:
        dom = when.day in self.days
        dow = (when.weekday() + 1) % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def next_after(self, after: float) -> float | None:
        """The first slot strictly after `after` (epoch seconds); None if none comes
        within the horizon (it never fires)."""
        start = datetime.fromtimestamp(after, UTC).replace(second=0, microsecond=0)
        when = start + timedelta(minutes=1)
        end = when + _HORIZON
        while when < end:
            if when.month not in self.months:
                year, month = (when.year + 1, 1) if when.month == 12 else (when.year,
                                                                          when.month + 1)
                when = when.replace(year=year, month=month, day=1, hour=0, minute=0)
            elif not self._day_matches(when):
                when = (when + timedelta(days=1)).replace(hour=0, minute=0)
            elif when.hour not in self.hours:
                when = (when + timedelta(hours=1)).replace(minute=0)
            elif when.minute not in self.minutes:
                when += timedelta(minutes=1)
            else:
                return when.timestamp()
        return None


def every_next_after(every_s: int, after: float) -> float:
    """The first slot of an interval strictly after `after`: slots are the multiples of
    `every_s` since the epoch (every_s=3600 fires on each hour, UTC)."""
    return (int(after // every_s) + 1) * every_s
