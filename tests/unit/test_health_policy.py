"""The failure detector's pure functions: silence, verdicts, deadlines and stalls."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.agents.health import (
    DetectorSettings,
    Evidence,
    Verdict,
    allowed_silence,
    bus_stall_tolerance,
    is_stall,
    look_interval,
    may_recover,
    next_deadline,
    silence,
    verdict,
)

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


class TestAllowedSilence:
    """The detector's one rule, which the what-if replay applies too (test_what_if.py)."""

    def test_a_healthy_agent_is_allowed_the_suspect_threshold_a_suspect_dead_after(self):
        damped = DetectorSettings(suspect_after=3.0, dead_after=10.0, heartbeat_interval=1.0,
                                  failures_before_critical=3)
        assert allowed_silence(damped, Verdict.ALIVE) == damped.suspect_threshold == 5.0
        assert allowed_silence(damped, Verdict.SUSPECT) == damped.dead_after == 10.0

    @given(suspect_after=st.integers(1, 2**12).map(lambda i: i / 64),
           extra=st.integers(0, 2**12).map(lambda i: i / 64),
           failures=st.integers(1, 6), interval=st.integers(1, 256).map(lambda i: i / 64),
           silent_for=st.integers(0, 2**14).map(lambda i: i / 64))
    def test_verdicts_change_exactly_at_the_allowed_silences(
        self, suspect_after: float, extra: float, failures: int, interval: float,
        silent_for: float,
    ) -> None:
        settings = DetectorSettings(suspect_after, suspect_after + extra, interval, failures)
        expected = (Verdict.DEAD if silent_for >= allowed_silence(settings, Verdict.SUSPECT)
                    else Verdict.SUSPECT if silent_for >= allowed_silence(settings, Verdict.ALIVE)
                    else Verdict.ALIVE)
        assert verdict(silent_for, settings) is expected
        assert allowed_silence(settings, Verdict.ALIVE) <= allowed_silence(settings,
                                                                           Verdict.SUSPECT)


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
        from domain.agents.health import may_recover, streak_after

        damped = DetectorSettings(suspect_after=3.0, dead_after=5.0, heartbeat_interval=1.0,
                                  success_before_passing=3)
        streak = streak_after(0, gap=4.0, settings=damped)  # the first beat after silence
        assert streak == 1 and not may_recover(streak, damped)
        streak = streak_after(streak, gap=1.0, settings=damped)
        streak = streak_after(streak, gap=1.0, settings=damped)
        assert streak == 3 and may_recover(streak, damped)
        assert streak_after(streak, gap=3.5, settings=damped) == 1  # silence again resets


class TestEvidence:
    """The rule for bus stalls: liveness evidence is unknown while the monitor cannot see
    the heartbeat stream as it is now, and no deadline expires on unknown evidence."""

    @staticmethod
    def current_at(at: float, last_seq: int = 0) -> Evidence:
        evidence = Evidence(tolerance=0.2)
        evidence.applied_up_to(last_seq, at)
        assert evidence.looked(at, at, last_seq)
        return evidence

    def test_unknown_until_the_bus_answers(self) -> None:
        evidence = Evidence(tolerance=0.2, since=5.0)
        assert not evidence.current
        assert not evidence.covers(4.0)

    def test_a_prompt_look_with_everything_applied_makes_it_current_then(self) -> None:
        evidence = Evidence(tolerance=0.2)
        assert evidence.looked(sent=10.0, answered=10.05, last_seq=0)
        assert evidence.current and evidence.since == 10.05
        assert evidence.covers(10.05) and not evidence.covers(10.06)

    def test_current_only_once_the_consumer_has_applied_what_the_stream_held(self) -> None:
        evidence = Evidence(tolerance=0.2)
        assert not evidence.looked(sent=10.0, answered=10.01, last_seq=40)
        assert not evidence.applied_up_to(39, 10.5)
        assert not evidence.current
        assert evidence.applied_up_to(40, 10.6)
        assert evidence.current and evidence.since == 10.6  # deadlines restart then

    def test_a_look_answered_late_is_a_stall(self) -> None:
        evidence = self.current_at(10.0)
        assert not evidence.looked(sent=11.0, answered=23.0, last_seq=0)
        assert not evidence.current and evidence.reason == "bus-stall"

    def test_a_look_overdue_is_a_stall_before_its_answer_comes(self) -> None:
        evidence = self.current_at(10.0)
        assert not evidence.overdue(sent=11.0, now=11.2)
        assert evidence.current
        assert evidence.overdue(sent=11.0, now=11.21)
        assert not evidence.current and evidence.blind_since == 11.21

    def test_a_look_sent_before_the_trouble_does_not_restore_it(self) -> None:
        """The reported case: after a freeze the server answers what it was sent during
        the freeze at once, before it has stored the heartbeats the agents sent then."""
        evidence = self.current_at(10.0)
        evidence.overdue(sent=10.5, now=10.8)
        assert not evidence.looked(sent=10.9, answered=22.0, last_seq=0)  # late: a stall
        assert not evidence.looked(sent=21.9, answered=22.01, last_seq=0)  # sent in it
        assert not evidence.current
        assert not evidence.looked(sent=22.02, answered=22.03, last_seq=75)
        assert not evidence.current  # the agents' heartbeats of the freeze not applied
        assert evidence.applied_up_to(75, 22.1)
        assert evidence.current and evidence.since == 22.1

    def test_while_current_deadlines_expire_only_as_far_as_the_consumer_has_caught_up(
            self) -> None:
        evidence = self.current_at(10.0, last_seq=5)
        evidence.looked(sent=10.1, answered=10.11, last_seq=8)
        evidence.looked(sent=10.2, answered=10.21, last_seq=9)
        assert evidence.horizon == 10.0  # the consumer is behind the stream
        assert not evidence.covers(10.1)
        evidence.applied_up_to(8, 10.25)
        assert evidence.horizon == 10.1 and evidence.covers(10.1)
        assert not evidence.covers(10.2)
        evidence.applied_up_to(9, 10.26)
        assert evidence.horizon == 10.2

    def test_any_trouble_loses_it_and_counts_an_epoch(self) -> None:
        evidence = self.current_at(10.0)
        epoch = evidence.epoch
        assert evidence.lost(11.0, "append-failed")
        assert not evidence.lost(11.5, "probe-failed")  # already lost
        assert evidence.reason == "append-failed" and evidence.epoch == epoch + 2
        assert not evidence.covers(10.0)

    def test_after_a_reconnect_only_a_new_consumer_counts(self) -> None:
        evidence = self.current_at(10.0, last_seq=500)
        evidence.consumer_lost(11.0, "reconnected")
        # NATS restarted: a new heartbeat stream, whose sequences start again at 1.
        assert not evidence.looked(sent=11.1, answered=11.11, last_seq=3)
        assert not evidence.current  # the old consumer's 500 says nothing of this stream
        evidence.consumer_replaced(11.2)
        assert evidence.applied == 0
        assert not evidence.looked(sent=11.3, answered=11.31, last_seq=3)
        assert evidence.applied_up_to(3, 11.4)
        assert evidence.current and evidence.since == 11.4

    @given(steps=st.lists(st.tuples(
        st.sampled_from(["look", "late", "overdue", "apply", "lose", "store"]),
        st.integers(min_value=1, max_value=50)), max_size=60))
    def test_nothing_expires_in_a_blind_spell_and_deadlines_restart_after_it(
            self, steps: list[tuple[str, int]]) -> None:
        """Whatever happens, evidence covers a moment only if a prompt look sent at or
        after it, and after the last trouble, was answered and its heartbeats applied;
        and never a moment before it last became current."""
        evidence = Evidence(tolerance=0.2)
        now, stream, applied = 0.0, 0, 0
        lost_at = -1.0
        reached: list[float] = []  # prompt looks since the last trouble, applied
        pending: list[tuple[float, int]] = []
        for step, size in steps:
            now += size / 100
            if step == "store":
                stream += size
            elif step == "apply":
                applied = min(stream, applied + size)
                evidence.applied_up_to(applied, now)
            elif step == "look":
                evidence.looked(now, now + 0.01, stream)
                pending.append((now, stream))
                now += 0.01
            elif step == "late":
                evidence.looked(now, now + 0.5, stream)
                now += 0.5
                lost_at, pending, reached = now, [], []
            elif step == "overdue":
                evidence.overdue(now - 0.3, now)
                lost_at, pending, reached = now, [], []
            else:
                evidence.lost(now, "trouble")
                lost_at, pending, reached = now, [], []
            reached += [sent for sent, seq in pending if seq <= applied and sent >= lost_at]
            pending = [(sent, seq) for sent, seq in pending if seq > applied]
            if evidence.current:
                assert evidence.since > lost_at
                assert evidence.since <= evidence.horizon <= now
                assert reached and evidence.horizon <= max(max(reached), evidence.since)
            else:
                assert not evidence.covers(now) and not evidence.covers(lost_at)


class TestStallRules:
    def test_a_stall_unseen_leaves_room_for_a_heartbeat_before_suspicion(self) -> None:
        settings = DetectorSettings(suspect_after=0.6, dead_after=1.0, heartbeat_interval=0.2)
        assert bus_stall_tolerance(settings) == pytest.approx(0.2)
        assert bus_stall_tolerance(settings) + settings.heartbeat_interval < settings.suspect_after

    def test_the_defaults(self) -> None:
        settings = DetectorSettings(suspect_after=3.0, dead_after=5.0, heartbeat_interval=1.0)
        assert bus_stall_tolerance(settings) == 1.0
        assert look_interval(settings) == 0.1

    def test_a_restart_of_deadlines_never_recovers_a_silent_suspect(self) -> None:
        assert may_recover(1, SETTINGS)
        assert may_recover(1, SETTINGS, last_seen=12.0, visible_since=11.0)
        assert not may_recover(1, SETTINGS, last_seen=10.0, visible_since=11.0)
