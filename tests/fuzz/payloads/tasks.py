"""The specs of the task commands: an agent's reports on its task (accept, progress,
complete, fail) and a submitter's commands (submit, cancel, results), with what a task
is (`TASK_FIELDS`, also a schedule's template)."""

from __future__ import annotations

from hypothesis import strategies as st

from infra import names as n
from tests.fuzz.payloads.probe import Raw
from tests.fuzz.payloads.spec import Field, Spec
from tests.fuzz.payloads.text import (
    CAPABILITY_CHARS,
    ID_CHARS,
    any_char,
    invalid_capability,
    invalid_id,
    invalid_kind,
    lone_surrogate,
    not_matching,
    odd_text,
    pattern_text,
    too_long,
    valid_id,
)
from tests.fuzz.payloads.values import (
    NON_FINITE,
    capabilities_valid,
    deep,
    labels_valid,
    labels_wrong,
    not_null,
    small_json,
    wrong_for_bool,
    wrong_for_float,
    wrong_for_int,
    wrong_for_list,
    wrong_for_str,
)

task_id = Field("task_id", valid_id, wrong_for_str() | invalid_id, required=True)
token = Field("token", pattern_text(ID_CHARS, 64), wrong_for_str() | invalid_id,
              required=True)
text_4096 = st.text(alphabet=any_char, max_size=50)
text_wrong = wrong_for_str() | too_long(4096)
# JSON the log can keep (a payload, a result): integers in orjson's 64 bits, signed or not.
any_json = small_json | deep(150) | st.sampled_from([2**63, 2**64 - 1, -(2**63)])
# ...and integers past them, refused when the command is read (domain.fields.StorableJson).
beyond_64_bits = st.sampled_from([-(2**63) - 1, 2**64, 10**100]) | st.integers(
    min_value=2**64).map(lambda n: Raw(str(n)))
any_noise = NON_FINITE | deep() | lone_surrogate() | odd_text.map(lambda s: Raw(f"'{s}'"))

# Flow control's fields of a task (domain/tasks/commands.py), in a submit and a template.
FLOW_FIELDS = (
    *(Field(key, pattern_text(ID_CHARS + ":", 30) | st.none(),
            not_null(wrong_for_str()) | not_matching(ID_CHARS + ":", 64))
      for key in ("concurrency_key", "fairness_key")),
    *(Field(key, labels_valid | st.none(), not_null(labels_wrong))
      for key in ("selector", "prefer")),
)
# What a task is, in a submit and in a schedule's template alike.
TASK_FIELDS = (
    Field("kind", pattern_text(CAPABILITY_CHARS, 30), wrong_for_str() | invalid_kind,
          required=True),
    # `payload` takes any JSON the log can keep; the hostile values ride along with
    # another mutation.
    Field("payload", any_json, beyond_64_bits, noise=any_noise),
    Field("requires", capabilities_valid,
          wrong_for_list(wrong_for_str() | invalid_capability,
                         pattern_text(CAPABILITY_CHARS, 20), 32)),
    Field("priority", st.integers(-1000, 1000), wrong_for_int(-1000, 1000)),
    Field("max_attempts", st.integers(1, 100), wrong_for_int(1, 100)),
    Field("timeout_s", st.floats(0, 604800, exclude_min=True) | st.integers(1, 604800),
          wrong_for_float(0, 604800, low_open=True)),
    *FLOW_FIELDS,
)
TEMPLATE = Spec("task", TASK_FIELDS)

# An agent's reports on the task it was offered.
REPORT_SPECS = (
    Spec(n.TASK_ACCEPT, (task_id, token)),
    Spec(n.TASK_PROGRESS, (
        task_id, token,
        Field("progress", st.floats(0, 1), wrong_for_float(0, 1), required=True),
    )),
    Spec(n.TASK_COMPLETE, (task_id, token, Field("result", any_json, beyond_64_bits,
                                                  noise=any_noise))),
    Spec(n.TASK_FAIL, (
        task_id, token, Field("error", text_4096, text_wrong, required=True),
        Field("retryable", st.booleans(), wrong_for_bool),
    )),
)

# Submitters' commands.
SUBMITTER_SPECS = (
    Spec(n.TASK_SUBMIT, (
        Field("task_id", valid_id | st.none(), wrong_for_str(nullable=True) | invalid_id),
        *TASK_FIELDS,
        Field("delay_s", st.floats(0, 31_622_400, exclude_min=True) | st.none(),
              not_null(wrong_for_float(0, 31_622_400, low_open=True))),
        # Its alternative: only null among valid bodies, as both given at once is refused
        # whatever the values (tests/unit/test_scheduled_tasks.py).
        Field("not_before", st.none(), not_null(wrong_for_float(0, 2e10, low_open=True))),
    )),
    Spec(n.TASK_CANCEL, (task_id, Field("reason", text_4096, text_wrong))),
    Spec(n.TASK_RESULTS, (
        Field("task_ids", st.lists(valid_id, min_size=1, max_size=5),
              wrong_for_list(wrong_for_str() | invalid_id, valid_id, 100) | st.just([]),
              required=True),
    )),
)
