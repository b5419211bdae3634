"""The failure detector's pure functions: silence, verdicts, deadlines and stalls."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.health import DetectorSettings, Verdict, is_stall, next_deadline, silence, verdict

SETTINGS = DetectorSettings(suspect_after=3.0, dead_after=5.0)

# Healthier verdicts have lower ranks.
RANK = {Verdict.ALIVE: 0, Verdict.SUSPECT: 1, Verdict.DEAD: 2}

# Times in 1/1024 s steps: sums and differences of these are exact in binary floating point,
# so properties that add a threshold and subtract it again test the policy, not rounding.
BINARY_TIMES = st.integers(min_value=0, max_value=2**30).map(lambda i: i / 1024)


class TestSilence:
    def test_counts_from_the_last_heartbeat_when_we_could_see_before_it(self) -> None:
        assert silence(last_seen=10.0, visible_since=4.0, now=12.5) == 2.5

    def test_counts_from_when_we_could_see_again_when_that_is_later(self) -> None:
        assert silence(last_seen=10.0, visible_since=11.0, now=12.5) == 1.5

    def test_is_zero_at_the_moment_of_the_heartbeat(self) -> None:
        assert silence(last_seen=7.0, visible_since=0.0, now=7.0) == 0.0

    def test_time_we_could_not_see_never_counts_against_the_agent(self) -> None:
        # Heard at 10, blind from 11 to 20: at 21 only one visible second has passed.
        assert silence(last_seen=10.0, visible_since=20.0, now=21.0) == 1.0


class TestVerdict:
    @pytest.mark.parametrize(
        ("silent_for", "expected"),
        [
            (0.0, Verdict.ALIVE),
            (2.999, Verdict.ALIVE),
            (3.0, Verdict.SUSPECT),
            (4.999, Verdict.SUSPECT),
            (5.0, Verdict.DEAD),
            (500.0, Verdict.DEAD),
        ],
    )
    def test_boundaries_belong_to_the_worse_verdict(
        self, silent_for: float, expected: Verdict
    ) -> None:
        assert verdict(silent_for, SETTINGS) is expected

    def test_negative_silence_is_alive(self) -> None:
        assert verdict(-1.0, SETTINGS) is Verdict.ALIVE

    def test_equal_thresholds_go_straight_from_alive_to_dead(self) -> None:
        settings = DetectorSettings(suspect_after=2.0, dead_after=2.0)

        assert verdict(1.999, settings) is Verdict.ALIVE
        assert verdict(2.0, settings) is Verdict.DEAD

    def test_verdicts_compare_equal_to_the_liveness_strings(self) -> None:
        assert Verdict.ALIVE == "alive"
        assert Verdict.SUSPECT == "suspect"
        assert Verdict.DEAD == "dead"

    @given(
        suspect_after=st.floats(min_value=0.001, max_value=1e6),
        extra=st.floats(min_value=0.0, max_value=1e6),
        a=st.floats(min_value=-1e7, max_value=1e7),
        b=st.floats(min_value=-1e7, max_value=1e7),
    )
    def test_more_silence_never_gives_a_healthier_verdict(
        self, suspect_after: float, extra: float, a: float, b: float
    ) -> None:
        settings = DetectorSettings(suspect_after=suspect_after, dead_after=suspect_after + extra)
        shorter, longer = sorted((a, b))

        assert RANK[verdict(shorter, settings)] <= RANK[verdict(longer, settings)]


class TestNextDeadline:
    def test_an_alive_agent_is_next_due_to_be_suspected(self) -> None:
        assert next_deadline(10.0, 0.0, SETTINGS, "alive") == 13.0

    def test_a_suspect_agent_is_next_due_to_be_declared_dead(self) -> None:
        assert next_deadline(10.0, 0.0, SETTINGS, "suspect") == 15.0

    def test_accepts_a_verdict_as_liveness(self) -> None:
        assert next_deadline(10.0, 0.0, SETTINGS, Verdict.ALIVE) == 13.0
        assert next_deadline(10.0, 0.0, SETTINGS, Verdict.SUSPECT) == 15.0

    @pytest.mark.parametrize(("liveness", "expected"), [("alive", 23.0), ("suspect", 25.0)])
    def test_restarts_from_when_we_could_see_again(self, liveness: str, expected: float) -> None:
        assert next_deadline(10.0, 20.0, SETTINGS, liveness) == expected

    @given(last_seen=BINARY_TIMES, visible_since=BINARY_TIMES)
    def test_the_verdict_changes_at_the_deadline(
        self, last_seen: float, visible_since: float
    ) -> None:
        due = next_deadline(last_seen, visible_since, SETTINGS, "alive")

        silent_then = silence(last_seen, visible_since, due)

        assert verdict(silent_then, SETTINGS) is not Verdict.ALIVE


class TestIsStall:
    def test_a_tick_on_time_is_not_a_stall(self) -> None:
        assert is_stall(previous_tick=10.0, now=11.0, expected_interval=1.0, tolerance=2.5) is False

    def test_a_tick_exactly_at_the_tolerance_is_not_a_stall(self) -> None:
        assert is_stall(previous_tick=10.0, now=13.5, expected_interval=1.0, tolerance=2.5) is False

    def test_a_tick_beyond_the_tolerance_is_a_stall(self) -> None:
        assert is_stall(previous_tick=10.0, now=13.75, expected_interval=1.0, tolerance=2.5) is True

    def test_a_long_pause_is_a_stall(self) -> None:
        assert is_stall(previous_tick=10.0, now=70.0, expected_interval=1.0, tolerance=2.5) is True


class TestFlapDamping:
    def test_failures_before_critical_adds_heartbeat_intervals_before_suspicion(self):
        damped = DetectorSettings(suspect_after=3.0, dead_after=10.0, heartbeat_interval=1.0,
                                  failures_before_critical=3)
        assert damped.suspect_threshold == 5.0
        assert verdict(4.9, damped) == Verdict.ALIVE
        assert verdict(5.0, damped) == Verdict.SUSPECT

    def test_damping_never_postpones_suspicion_past_death(self):
        damped = DetectorSettings(suspect_after=3.0, dead_after=4.0, heartbeat_interval=1.0,
                                  failures_before_critical=10)
        assert damped.suspect_threshold == 4.0

    def test_success_before_passing_counts_heartbeats_in_a_row(self):
        from domain.health import may_recover, streak_after

        damped = DetectorSettings(suspect_after=3.0, dead_after=5.0, heartbeat_interval=1.0,
                                  success_before_passing=3)
        streak = streak_after(0, gap=4.0, settings=damped)  # the first beat after silence
        assert streak == 1 and not may_recover(streak, damped)
        streak = streak_after(streak, gap=1.0, settings=damped)
        streak = streak_after(streak, gap=1.0, settings=damped)
        assert streak == 3 and may_recover(streak, damped)
        assert streak_after(streak, gap=3.5, settings=damped) == 1  # silence again resets
