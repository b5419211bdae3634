"""The spec of admin.limits.set (domain/limits/commands.py): a key's concurrency and
rate limits."""

from __future__ import annotations

from hypothesis import strategies as st

from infra import names as n
from tests.fuzz.payloads.spec import Field, Spec
from tests.fuzz.payloads.text import ID_CHARS, not_matching, pattern_text
from tests.fuzz.payloads.values import not_null, wrong_for_float, wrong_for_int, wrong_for_str

RATES = ["600/min", "10/s", "1 / hour", "2.5/sec"]
NOT_RATES = ["", "600", "0/min", "-1/s", "ten/min", "5/day", "x" * 33]
# A key's limits: the values a `key` takes; a weight or a submitter's bound there, or a
# burst without a rate, is refused whatever its value (tests/unit/test_flow_dispatch.py).
LIMIT_SPEC = Spec(n.ADMIN_LIMITS_SET, (
    Field("scope", st.just("key"), wrong_for_str() | st.sampled_from(
        ["", "Key", "keys", "team", "key "]), required=True),
    Field("name", pattern_text(ID_CHARS + ":", 30), wrong_for_str()
          | not_matching(ID_CHARS + ":", 64), required=True),
    Field("concurrency", st.integers(0, 1_000_000) | st.none(),
          not_null(wrong_for_int(0, 1_000_000))),
    Field("rate", st.sampled_from(RATES) | st.none(),
          not_null(wrong_for_str()) | st.sampled_from(NOT_RATES)),
    Field("burst", st.none(), not_null(wrong_for_int(1, 1_000_000))),
    Field("weight", st.none(), not_null(wrong_for_float(0, 1000, low_open=True))),
    Field("max_unfinished", st.none(), not_null(wrong_for_int(0, 100_000_000))),
))
