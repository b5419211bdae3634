"""The what-if replay of recorded heartbeats: pure functions of times."""

from __future__ import annotations

import pytest

from domain.what_if import Silence, compare, deaths, silences


class TestSilences:
    def test_gaps_between_signals_and_the_trailing_one(self):
        gaps = silences([0.0, 1.0, 4.0], end=10.0, ended_by_leaving=False)
        assert gaps == [Silence(0.0, 1.0, True), Silence(1.0, 4.0, True),
                        Silence(4.0, 10.0, False)]

    def test_an_agent_that_left_has_no_trailing_silence(self):
        assert silences([0.0, 1.0], end=10.0, ended_by_leaving=True) == [
            Silence(0.0, 1.0, True)]

    def test_no_signals_no_silences(self):
        assert silences([], end=10.0, ended_by_leaving=False) == []


class TestDeaths:
    def test_a_death_per_silence_at_least_dead_after_long(self):
        gaps = silences([0.0, 0.5, 3.0], end=3.2, ended_by_leaving=False)
        assert deaths(gaps, dead_after=1.0) == [1.5]
        assert deaths(gaps, dead_after=3.0) == []


class TestCompare:
    def test_a_recorded_false_death_is_avoided_by_a_longer_dead_after(self):
        gaps = silences([0.0, 2.1], end=2.2, ended_by_leaving=False)
        [outcome] = compare(gaps, recorded_deaths=[1.02], dead_after=3.0)
        assert outcome.verdict == "avoided" and outcome.false_death

    def test_a_real_death_moves_work_later_by_the_difference(self):
        gaps = silences([0.0], end=10.0, ended_by_leaving=False)
        [outcome] = compare(gaps, recorded_deaths=[1.03], dead_after=3.0)
        assert outcome.verdict == "later" and not outcome.false_death
        assert outcome.shift_s == pytest.approx(1.97)

    def test_the_settings_in_force_reproduce_the_recorded_deaths(self):
        gaps = silences([0.0, 2.1], end=9.0, ended_by_leaving=False)
        outcomes = compare(gaps, recorded_deaths=[1.05, 3.12], dead_after=1.0)
        assert [o.verdict for o in outcomes] == ["same", "same"]

    def test_a_shorter_dead_after_adds_deaths_and_declares_earlier(self):
        gaps = silences([0.0, 0.8, 5.0], end=5.1, ended_by_leaving=False)
        outcomes = compare(gaps, recorded_deaths=[1.8], dead_after=0.5)
        assert [o.verdict for o in outcomes] == ["added", "earlier"]
        assert outcomes[1].shift_s == pytest.approx(-0.5)
