"""A payload or result the log cannot keep is refused when the command is read, not
failed when its event is written (an integer past 64 bits used to be a 503)."""

from __future__ import annotations

import pydantic
import pytest

from domain.tasks.commands import CompleteTask, SubmitTask


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, {"a": [1, 2**70]}])
def test_integers_beyond_64_bits_are_refused(value: object) -> None:
    with pytest.raises(pydantic.ValidationError, match="beyond 64 bits"):
        SubmitTask(kind="k", payload=value)
    with pytest.raises(pydantic.ValidationError, match="beyond 64 bits"):
        CompleteTask(task_id="t1", token="t", result=value)


@pytest.mark.parametrize("value", [2**64 - 1, -(2**63), {"n": [0, -1, 1.5, "x", None]}])
def test_what_the_log_can_keep_is_taken(value: object) -> None:
    assert SubmitTask(kind="k", payload=value).payload == value
