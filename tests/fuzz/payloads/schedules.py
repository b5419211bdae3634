"""The specs of a schedule's commands (domain/schedules/commands.py): create, with a task
template and a cron or an interval; pause, resume, delete; list."""

from __future__ import annotations

from hypothesis import strategies as st

from infra import names as n
from tests.fuzz.payloads.spec import Field, Spec, mutated_object, obj
from tests.fuzz.payloads.tasks import TEMPLATE
from tests.fuzz.payloads.text import ID_CHARS, not_matching, odd_text, pattern_text
from tests.fuzz.payloads.values import (
    not_null,
    small_json,
    wrong_for_bool,
    wrong_for_float,
    wrong_for_int,
    wrong_for_str,
)

schedule_name = Field("name", pattern_text(ID_CHARS, 48), wrong_for_str()
                      | not_matching(ID_CHARS, 48), required=True)
CRONS = ["* * * * *", "*/5 * * * *", "0 3 * * mon-fri", "@daily", "0 0 29 2 *"]
NOT_CRONS = ["", "* * * *", "* * * * * *", "61 * * * *", "0 0 30 2 *", "@often", "5-1 * * * *",
             "*/0 * * * *", "* * * * 8", "x" * 129]
choice_wrong = wrong_for_str() | st.sampled_from(["", "Skip", "ALLOW", "always", "skip "])
SCHEDULE_SPECS = (
    Spec(n.SCHEDULE_CREATE, (
        schedule_name,
        Field("cron", st.sampled_from(CRONS) | st.none(),
              not_null(wrong_for_str()) | st.sampled_from(NOT_CRONS)),
        Field("every_s", st.integers(1, 31_622_400) | st.none(),
              not_null(wrong_for_int(1, 31_622_400))),
        Field("task", obj(TEMPLATE), st.one_of(
            odd_text, st.integers(), st.none(), st.lists(small_json, max_size=3),
            st.deferred(lambda: mutated_object(TEMPLATE))), required=True),
        Field("overlap", st.sampled_from(["skip", "allow"]), choice_wrong),
        Field("catch_up", st.sampled_from(["once", "skip"]), choice_wrong),
        Field("grace_s", st.floats(0, 86400, exclude_min=True) | st.integers(1, 86400),
              wrong_for_float(0, 86400, low_open=True)),
        Field("replace", st.booleans(), wrong_for_bool),
    )),
    *(Spec(command, (schedule_name,))
      for command in (n.SCHEDULE_PAUSE, n.SCHEDULE_RESUME, n.SCHEDULE_DELETE)),
    Spec(n.SCHEDULE_LIST, (
        Field("after", pattern_text(ID_CHARS, 48) | st.none(),
              not_null(wrong_for_str()) | not_matching(ID_CHARS, 48)),
        Field("limit", st.integers(1, 1000), wrong_for_int(1, 1000)),
    )),
)
