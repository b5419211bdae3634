"""The log's short times and short event ids (docs/protocol.md, Events): written
shorter than before, and what was written before still read as the same events."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from eventsourcing.persistence import StoredEvent

from bench.scenarios.tasks import LIFECYCLE_BODIES
from infra.log.format.codec import create_mapper
from infra.log.format.forms import expand_state, short_time, time_of

# The same lifecycle's rows as the orchestrator wrote them before short times: the time
# an integer of microseconds.
ROWS_BEFORE_SHORT_TIMES = (
    b'[1796017394378399,"k","8yco9S0Bf0mKH8BJw3mmH29T6WFCAMUS5CXxKkZw--Y"]',
    b'[1796017394378502,"w0","~uVSksWhgMHo",[["w0",0,10],"w1"]]',
    b'[1796017394380686,"~uVSksWhgMHo"]',
    b'[1796017394381893,"~uVSksWhgMHo","w0"]',
)



class TestShortTimes:
    def test_a_timestamp_is_its_microseconds_in_base_64_and_sorts_as_text(self) -> None:
        assert short_time(1796017394378399) == "5NMUXnLPU"  # 2026-11-30T05:43:14.378399Z
        assert [short_time(n) for n in (0, 1, 63, 64, 4095, 4096)] == [
            "-", "0", "z", "0-", "zz", "0--"]
        moments = sorted({random.randrange(1 << 48, 1 << 54) for _ in range(2000)})
        texts = [short_time(moment) for moment in moments]
        assert texts == sorted(texts) and {len(text) for text in texts} == {9}
        assert [time_of(text) for text in texts] == moments

    @pytest.mark.parametrize("text", ["", "ab$", "+/", "AB=", "é", "5NMUX nLPU"])
    def test_a_string_of_other_characters_is_no_time(self, text: str) -> None:
        with pytest.raises(ValueError):
            time_of(text)

    def test_an_integer_timestamp_written_before_reads_as_the_same_time(self) -> None:
        moment = datetime(2026, 11, 30, 5, 43, 14, 378_399, tzinfo=UTC)
        assert expand_state({"timestamp": 1796017394378399})["timestamp"] == moment
        assert expand_state({"timestamp": "5NMUXnLPU"})["timestamp"] == moment



class TestRowsWrittenBefore:
    def test_the_rows_written_before_short_times_read_as_the_same_events(self) -> None:
        mapper = create_mapper()
        for version, (before, now) in enumerate(zip(ROWS_BEFORE_SHORT_TIMES, LIFECYCLE_BODIES,
                                                    strict=True), 1):
            topic = "domain.task:Task." + ("Submitted", "Assigned", "Accepted",
                                           "Completed")[version - 1]
            old = mapper.to_domain_event(StoredEvent("t1", version, topic, before))
            assert vars(old) == vars(mapper.to_domain_event(
                StoredEvent("t1", version, topic, now)))
            assert mapper.to_stored_event(old).state == now

