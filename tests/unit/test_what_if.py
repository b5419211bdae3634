"""The what-if replay of recorded silences: every verdict pinned on scripted incidents."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.agents.health import DetectorSettings, Verdict, next_deadline, verdict
from domain.agents.what_if import (
    Detector,
    Silence,
    Span,
    compare,
    deadline,
    ended_by,
    evaluate,
    grid,
    holes,
    merged,
    same_incarnation,
)

WINDOW = Span(0.0, 100.0)
IN_FORCE = Detector(suspect_after=3.0, dead_after=5.0)


def verdicts(silences: list[Silence], detector: DetectorSettings,
             window: Span = WINDOW) -> list[str]:
    return [o.verdict for o in compare(silences, detector, window)]


class TestVerdicts:
    def test_the_settings_in_force_reproduce_the_recorded_death(self):
        died = Silence(10.0, 30.0, recorded_death=15.02, death_position=7)
        assert verdicts([died], IN_FORCE) == ["same"]

    def test_a_shorter_dead_after_declares_earlier(self):
        died = Silence(10.0, None, recorded_death=15.0)
        [outcome] = compare([died], Detector(1.0, 2.0), WINDOW)
        assert outcome.verdict == "earlier" and outcome.shift_s == pytest.approx(-3.0)

    def test_a_longer_dead_after_declares_a_real_death_later(self):
        died = Silence(10.0, None, recorded_death=15.0)
        [outcome] = compare([died], Detector(5.0, 10.0), WINDOW)
        assert outcome.verdict == "later" and outcome.shift_s == pytest.approx(5.0)
        assert not outcome.false_death

    def test_a_longer_dead_after_avoids_a_false_death(self):
        outage = Silence(10.0, 17.0, recorded_death=15.0)  # re-registered at 17
        [outcome] = compare([outage], Detector(5.0, 10.0), WINDOW)
        assert outcome.verdict == "avoided" and outcome.false_death

    def test_a_shorter_dead_after_adds_a_death_on_a_recorded_silence(self):
        blip = Silence(10.0, 13.0)  # recovered from suspicion, never declared dead
        assert verdicts([blip], IN_FORCE) == []
        assert verdicts([blip], Detector(1.0, 2.0)) == ["added"]

    def test_still_silent_when_the_window_ends_before_the_replayed_deadline_is_pending(self):
        # The case: a final death, never came back, replayed under dead_after 20
        # with the window ending 15 s into the silence. Not "avoided".
        final = Silence(10.0, None, recorded_death=15.0)
        [outcome] = compare([final], Detector(10.0, 20.0), Span(0.0, 25.0))
        assert outcome.verdict == "pending" and outcome.replayed_death is None
        # Once the window reaches the deadline, it is a later death.
        assert verdicts([final], Detector(10.0, 20.0), Span(0.0, 31.0)) == ["later"]

    def test_a_silence_that_ends_after_the_window_is_pending_too(self):
        long_blip = Silence(90.0, 150.0)
        assert verdicts([long_blip], Detector(3.0, 20.0)) == ["pending"]
        assert verdicts([long_blip], Detector(3.0, 5.0)) == ["added"]

    def test_a_quiet_silence_left_undecided_is_no_row(self):
        assert verdicts([Silence(99.5, None)], IN_FORCE) == []

    def test_each_recorded_death_is_matched_to_its_own_silence(self):
        early = Silence(10.0, 12.5, recorded_death=11.0, death_position=5)
        final = Silence(50.0, None, recorded_death=51.0, death_position=9)
        outcomes = compare([early, final], Detector(2.0, 3.0), Span(0.0, 52.0))
        assert [(o.silence.death_position, o.verdict) for o in outcomes] == [
            (5, "avoided"), (9, "pending")]

    def test_silences_outside_the_window_are_left_out(self):
        assert verdicts([Silence(10.0, 30.0, recorded_death=15.0)], IN_FORCE,
                        Span(40.0, 100.0)) == []


class TestFalseDeath:
    """A false death is the same incarnation heard from again after being declared dead;
    another process taking the id (a new incarnation) is a real death and a restart."""

    DIED = Silence(10.0, None, recorded_death=15.0, death_position=7)

    def test_the_same_process_heard_again_is_a_false_death(self):
        assert same_incarnation("proc-a", "proc-a")
        back = ended_by(self.DIED, 17.0, same=True)
        assert back.resumed and back.end == 17.0
        [outcome] = compare([back], IN_FORCE, WINDOW)
        assert outcome.false_death and outcome.verdict == "same"
        assert evaluate({"a": [back]}, IN_FORCE, WINDOW)[1].false_deaths_recorded == 1

    @pytest.mark.parametrize(("silent", "heard"), [("proc-a", "proc-b"), (None, "proc-b"),
                                                   ("proc-a", None), (None, None)])
    def test_a_new_process_is_a_real_death_followed_by_a_restart(self, silent, heard):
        assert not same_incarnation(silent, heard)
        restarted = ended_by(self.DIED, 17.0, same=same_incarnation(silent, heard))
        assert not restarted.resumed and restarted.restarted
        [outcome] = compare([restarted], IN_FORCE, WINDOW)
        assert not outcome.false_death and outcome.verdict == "same"
        point = evaluate({"a": [restarted]}, IN_FORCE, WINDOW)[1]
        assert (point.false_deaths_recorded, point.false_deaths, point.real_deaths) == (0, 0, 1)

    def test_a_longer_dead_after_does_not_avoid_a_real_death_it_moves_work_at_the_restart(
            self):
        restarted = ended_by(self.DIED, 17.0, same=False)
        [outcome] = compare([restarted], Detector(5.0, 10.0), WINDOW)
        assert outcome.verdict == "later" and outcome.shift_s == pytest.approx(2.0)
        assert not outcome.false_death
        point = evaluate({"a": [restarted]}, Detector(5.0, 10.0), WINDOW)[1]
        assert point.counts["avoided"] == 0 and point.false_deaths == 0

    def test_a_suspicion_ended_by_a_restart_is_no_false_suspicion(self):
        suspected = ended_by(Silence(10.0, None), 12.0, same=False)
        point = evaluate({"a": [suspected]}, Detector(1.0, 5.0), WINDOW)[1]
        assert (point.suspicions, point.false_suspicions) == (1, 0)


class TestDeadline:
    def test_heard_again_exactly_at_the_deadline_is_dead(self):
        assert deadline(Silence(0.0, 5.0), 5.0, 100.0).at == 5.0
        assert deadline(Silence(0.0, 4.99), 5.0, 100.0).at is None


class TestCoverage:
    def test_holes_are_the_parts_no_watch_covers(self):
        watched = [Span(10.0, 20.0), Span(30.0, 40.0)]
        assert holes(watched, Span(0.0, 50.0)) == [Span(0.0, 10.0), Span(20.0, 30.0),
                                                   Span(40.0, 50.0)]
        assert holes(watched, Span(12.0, 18.0)) == []

    def test_overlapping_watches_merge(self):
        assert merged([Span(5.0, 9.0), Span(0.0, 6.0), Span(20.0, 21.0)]) == [
            Span(0.0, 9.0), Span(20.0, 21.0)]


class TestSweep:
    def test_figures_per_point(self):
        silences = {
            "flappy": [Silence(10.0, 17.0, recorded_death=15.0)],
            "goner": [Silence(20.0, None, recorded_death=25.0)],
            "blip": [Silence(30.0, 34.0)],
        }
        points = {d.dead_after: evaluate(silences, d, WINDOW)[1]
                  for d in grid([3.0], [5.0, 10.0], [1], 1.0)}
        in_force, longer = points[5.0], points[10.0]
        assert in_force.counts["same"] == 2 and in_force.false_deaths == 1
        assert in_force.real_deaths == 1 and in_force.recorded_deaths == 2
        assert in_force.suspicions == 3 and in_force.false_suspicions == 2
        assert in_force.move_mean_s == pytest.approx(5.0)
        assert longer.counts["avoided"] == 1 and longer.counts["later"] == 1
        assert longer.false_deaths == 0 and longer.move_p99_s == pytest.approx(10.0)

    def test_flap_damping_delays_suspicion_never_past_death(self):
        detector = Detector(3.0, 5.0, failures_before_critical=4, heartbeat_interval=1.0)
        assert detector.suspect_threshold == 5.0
        assert [d.failures_before_critical for d in grid([1.0], [2.0], [1, 2], 1.0)] == [1, 2]


# Times and settings in 1/64 s steps: sums of these are exact, so the boundaries compared
# are the rule's, not rounding's.
SIXTY_FOURTHS = st.integers(0, 2**14).map(lambda i: i / 64)
DETECTORS = st.builds(
    lambda suspect, extra, interval, failures: DetectorSettings(
        suspect_after=suspect, dead_after=suspect + extra, heartbeat_interval=interval,
        failures_before_critical=failures),
    st.integers(1, 2**10).map(lambda i: i / 64), st.integers(0, 2**10).map(lambda i: i / 64),
    st.integers(1, 128).map(lambda i: i / 64), st.integers(1, 6))


def live_story(settings: DetectorSettings, start: float, heard_again: float | None,
               until: float) -> tuple[float | None, float | None]:
    """When the live detector suspects and declares dead an agent silent from `start`
    (already the later of its last heartbeat and when the monitor last began to see) to
    `heard_again`, looking only at its deadlines (services/health/monitor.py): the times
    of suspicion and death, None for what does not come by `until` or before it is heard
    again."""
    suspected = died = None
    liveness = Verdict.ALIVE
    while liveness != Verdict.DEAD:
        due = next_deadline(start, start, settings, liveness)
        if due > until or (heard_again is not None and due > heard_again):
            break
        liveness = verdict(due - start, settings)
        if suspected is None:
            suspected = due
        if liveness == Verdict.DEAD:
            died = due
    return suspected, died


class TestTheReplayIsTheLiveRule:
    """What-if and the live detector apply one rule (domain.agents.health.allowed_silence) to one
    type of settings: on the same silences they agree on suspicion and death."""

    def test_the_settings_are_the_live_detectors_own_type(self):
        replayed = Detector(3.0, 5.0, 4, 0.5)
        assert type(replayed) is DetectorSettings
        assert replayed == DetectorSettings(suspect_after=3.0, dead_after=5.0,
                                            heartbeat_interval=0.5, failures_before_critical=4)
        assert all(type(d) is DetectorSettings for d in grid([1.0], [2.0], [1, 2], 1.0))

    @pytest.mark.parametrize(
        ("settings", "gap", "suspected", "dead"),
        [
            (DetectorSettings(3.0, 5.0), 2.999, False, False),
            (DetectorSettings(3.0, 5.0), 3.0, True, False),  # a boundary is the worse verdict
            (DetectorSettings(3.0, 5.0), 5.0, True, True),
            (DetectorSettings(3.0, 10.0, 1.0, 3), 4.9, False, False),  # damped: 5 s
            (DetectorSettings(3.0, 10.0, 1.0, 3), 5.0, True, False),
            (DetectorSettings(3.0, 4.0, 1.0, 10), 3.9, False, False),  # never past death
            (DetectorSettings(3.0, 4.0, 1.0, 10), 4.0, True, True),
            (DetectorSettings(2.0, 2.0), 2.0, True, True),
        ],
    )
    def test_a_table_of_gaps(self, settings: DetectorSettings, gap: float, suspected: bool,
                             dead: bool):
        assert (verdict(gap, settings) != Verdict.ALIVE, verdict(gap, settings)
                == Verdict.DEAD) == (suspected, dead)
        _, point = evaluate({"a": [Silence(10.0, 10.0 + gap)]}, settings, WINDOW)
        assert (point.suspicions, point.false_deaths) == (int(suspected), int(dead))

    @given(settings=DETECTORS, start=SIXTY_FOURTHS, gap=SIXTY_FOURTHS,
           resumed=st.booleans(), window=SIXTY_FOURTHS)
    def test_on_any_silence_and_settings(self, settings: DetectorSettings, start: float,
                                         gap: float, resumed: bool, window: float):
        end = start + window
        heard_again = start + gap if resumed else None
        suspected, died = live_story(settings, start, heard_again, end)
        silence = Silence(start, heard_again)
        outcomes, point = evaluate({"a": [silence]}, settings, Span(0.0, end))
        assert point.suspicions == (suspected is not None)
        assert point.real_deaths + point.false_deaths == (died is not None)
        replayed = [o.replayed_death for o in outcomes.get("a", [])
                    if o.replayed_death is not None]
        assert replayed == ([] if died is None else [died])
        if resumed:  # heard again: what the live verdict was by then, the replay says too
            seen = verdict(min(gap, window), settings)
            assert point.suspicions == (seen != Verdict.ALIVE)
            assert point.false_deaths == (seen == Verdict.DEAD)
