"""The log's compact forms of an event's state, which LogMapper (infra/log/format/codec.py)
writes and reads.

Every event is stored forever and a lifecycle writes four, so the fields every event
(or every placement) carries are written shorter than the generic `_type_` objects;
the long forms, in events written before, are still read (docs/protocol.md, Events).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from eventsourcing.utils import resolve_topic

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# A placement's candidates (services.commands.tasks.considered), written as rows.
CANDIDATE_COLUMNS = ("agent_id", "load", "capacity", "status")
_DEFAULT_STATUS = "healthy"  # the status of nearly every candidate: left out of a row
# A submission's `fingerprint`, a SHA-256: 64 hex digits, or in URL-safe base64 43.
_FINGERPRINT_B64 = 43
_HEX_DIGITS = "0123456789abcdef"
# A fencing token (services.commands.tasks.new_token: 16 hex digits) is written as `~` and
# its 8 bytes in URL-safe base64 (11 characters). No token an agent can send starts with
# `~` (domain.tasks.commands.Token), so the short form is never mistaken for one.
_TOKEN_MARK = "~"
_TOKEN_HEX = 16
_TOKEN_SHORT = 1 + 11
# A time in UTC, integer microseconds since 1970, is written as a string of those
# microseconds in base 64, most significant digit first, without leading zero digits:
# 9 characters until the year 2541, for 16 decimal digits. The digits are URL-safe
# base64's characters in ASCII order (`-`, `0`-`9`, `A`-`Z`, `_`, `a`-`z`), so that
# times of one length sort as text as they do as times. Events written before have the
# integer itself; no time was ever a string before, so either reads.
_TIME_DIGITS = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
_BASE64_DIGITS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_TO_TIME = bytes.maketrans(_BASE64_DIGITS, _TIME_DIGITS)
_FROM_TIME = bytes.maketrans(_TIME_DIGITS, _BASE64_DIGITS)


class _Required:
    """A column without a default: it is always written."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()


class RowForm(NamedTuple):
    """How the events of one class are written as a row: a JSON array of the values of
    `columns`, in that order, the trailing ones equal to their column's default left out;
    `from_subject` names the fields equal to the aggregate id, which the subject holds."""

    columns: tuple[tuple[str, Any], ...]  # (field, default or REQUIRED)
    from_subject: tuple[str, ...] = ()


_TASK = "domain.task:Task."
# The row forms, by event topic. PART OF THE LOG'S FORMAT: events are written with these
# columns and defaults and stored forever, so an entry never changes, whatever the
# settings or the commands' defaults become. An event class whose fields change gets a
# class_version above 1 (its events are then written as objects) or a new entry. The
# defaults are those of the commands (domain.tasks.commands.SubmitTask: payload null, no
# requirements, priority 0, 3 attempts, 300 s) and of the settings' placement strategy,
# as they were when this form was made; a value of another type (300 for 300.0) is
# written, not left out. A column may be appended, with a default: every event written
# before it reads as that default (Submitted's `submitted_by`, "" for tasks submitted
# before tasks had owners; its `not_before`, 0.0 for tasks submitted before delays; its
# flow control fields, "" and null for tasks submitted before flow control; a move's
# `failures`, null for moves before unaccepted assignments counted as failed attempts;
# DeadLettered's `reason`, null for ends before the accept timeout could end a task).
ROW_FORMS: Final[Mapping[str, RowForm]] = MappingProxyType({
    _TASK + "Submitted": RowForm(
        (("timestamp", REQUIRED), ("kind", REQUIRED), ("fingerprint", REQUIRED),
         ("payload", None), ("requires", []), ("priority", 0), ("max_attempts", 3),
         ("timeout_s", 300.0), ("submitted_by", ""), ("not_before", 0.0),
         ("concurrency_key", ""), ("fairness_key", ""), ("selector", None),
         ("prefer", None)),
        from_subject=("task_id",)),
    _TASK + "Assigned": RowForm(
        (("timestamp", REQUIRED), ("agent_id", REQUIRED), ("token", REQUIRED),
         ("considered", REQUIRED), ("strategy", "least_loaded"), ("incarnation", 1),
         ("attempt", 1))),
    _TASK + "Reassigned": RowForm(
        (("timestamp", REQUIRED), ("from_agent", REQUIRED), ("agent_id", REQUIRED),
         ("token", REQUIRED), ("attempt", REQUIRED), ("reason", REQUIRED),
         ("considered", REQUIRED), ("strategy", "least_loaded"), ("incarnation", 1),
         ("failures", None))),
    _TASK + "Requeued": RowForm(
        (("timestamp", REQUIRED), ("from_agent", REQUIRED), ("reason", REQUIRED),
         ("failures", None))),
    _TASK + "Accepted": RowForm(
        (("timestamp", REQUIRED), ("token", REQUIRED), ("attempt", 1))),
    _TASK + "Progressed": RowForm(
        (("timestamp", REQUIRED), ("token", REQUIRED), ("progress", REQUIRED))),
    _TASK + "Completed": RowForm(
        (("timestamp", REQUIRED), ("token", REQUIRED), ("agent_id", REQUIRED),
         ("result", None), ("attempt", 1))),
    _TASK + "Failed": RowForm(
        (("timestamp", REQUIRED), ("token", REQUIRED), ("agent_id", REQUIRED),
         ("error", REQUIRED), ("failures", REQUIRED), ("retry_in_s", REQUIRED),
         ("retry_at", REQUIRED), ("retryable", True), ("attempt", 1))),
    _TASK + "DeadLettered": RowForm(
        (("timestamp", REQUIRED), ("token", REQUIRED), ("agent_id", REQUIRED),
         ("error", REQUIRED), ("failures", REQUIRED), ("retryable", True), ("attempt", 1),
         ("reason", None))),
    _TASK + "Cancelled": RowForm(
        (("timestamp", REQUIRED), ("reason", REQUIRED), ("agent_id", REQUIRED),
         ("was", REQUIRED))),
    _TASK + "StaleResultRefused": RowForm(
        (("timestamp", REQUIRED), ("token", REQUIRED), ("action", REQUIRED),
         ("reason", REQUIRED), ("current_attempt", REQUIRED))),
})


class _Compiled(NamedTuple):
    names: tuple[str, ...]
    defaults: tuple[Any, ...]
    required: int  # the leading columns without a default
    from_subject: tuple[str, ...]


def _compile(form: RowForm) -> _Compiled:
    names = tuple(name for name, _ in form.columns)
    defaults = tuple(default for _, default in form.columns)
    required = sum(1 for default in defaults if default is REQUIRED)
    if any(default is REQUIRED for default in defaults[required:]):
        raise ValueError(f"columns with defaults must come last: {names}")
    return _Compiled(names, defaults, required, form.from_subject)


_ROWS = {topic: _compile(form) for topic, form in ROW_FORMS.items()}
# Columns appended to a form after events were written as objects without them: such an
# object reads as holding the column's default, as a row written before does.
_APPENDED: Final[Mapping[str, tuple[tuple[str, Any], ...]]] = MappingProxyType({
    _TASK + "Submitted": (("submitted_by", ""), ("not_before", 0.0),
                          ("concurrency_key", ""), ("fairness_key", ""), ("selector", None),
                          ("prefer", None)),
    _TASK + "Reassigned": (("failures", None),),
    _TASK + "Requeued": (("failures", None),),
    _TASK + "DeadLettered": (("reason", None),),
})


def aggregate_topic(event_topic: str) -> str | None:
    """The topic of the aggregate an event class is nested in: `domain.task:Task` for
    `domain.task:Task.Submitted`; None for a class that is not nested."""
    module, _, qualname = event_topic.partition(":")
    outer, dot, _ = qualname.rpartition(".")
    return f"{module}:{outer}" if dot else None


def compact_state(state: dict[str, Any], topic: str) -> dict[str, Any]:
    """An event's state (the mapper's own copy) with its compact forms, in place:
    `timestamp` in UTC as microseconds since 1970 in base 64 (`short_time`);
    `originator_topic` left out when it is the class the event is nested in;
    `considered` as rows `[agent_id, load, capacity(, status when not healthy)]`, a
    healthy candidate after the first as `[agent_id, load]` when its capacity is the row
    before's and as `agent_id` alone when its load is too; a `fingerprint` of 64 hex
    digits in URL-safe base64 (43 characters, no padding); a `token` of 16 hex digits as
    `~` and its 8 bytes in URL-safe base64 (11 characters). Anything else, and any value
    not of the expected shape, is written as before. `state_row` then makes a row of it
    when its class has one."""
    timestamp = state.get("timestamp")
    if type(timestamp) is datetime and timestamp.tzinfo is UTC:
        microseconds = (timestamp - EPOCH) // _MICROSECOND
        # A time before 1970 (none of the orchestrator's) keeps the integer.
        state["timestamp"] = short_time(microseconds) if microseconds >= 0 else microseconds
    if "originator_topic" in state and state["originator_topic"] == aggregate_topic(topic):
        del state["originator_topic"]
    considered = state.get("considered")
    if type(considered) is list and considered:
        rows = _candidate_rows(considered)
        if rows is not None:
            state["considered"] = rows
    fingerprint = state.get("fingerprint")
    if type(fingerprint) is str and _is_hex(fingerprint, 64):
        state["fingerprint"] = base64.urlsafe_b64encode(bytes.fromhex(fingerprint)).decode()[
            :_FINGERPRINT_B64]
    token = state.get("token")
    if type(token) is str and _is_hex(token, _TOKEN_HEX):
        state["token"] = _TOKEN_MARK + base64.urlsafe_b64encode(
            bytes.fromhex(token)).decode()[:_TOKEN_SHORT - 1]
    return state


def short_time(microseconds: int) -> str:
    """Microseconds since 1970 (>= 0) as a time's digits (above), the leading zero
    digits left out (at least one digit)."""
    size = max(1, (microseconds.bit_length() + 5) // 6)
    whole = -(-size // 4) * 3  # the bytes of a whole number of 4-digit groups
    digits = binascii.b2a_base64(microseconds.to_bytes(whole, "big"), newline=False)
    return digits.translate(_TO_TIME)[len(digits) - size:].decode()


def time_of(digits: str) -> int:
    """The microseconds `short_time` wrote (ValueError for a string of other
    characters)."""
    try:
        raw = ("-" * (-len(digits) % 4) + digits).encode()  # the leading zero digits back
        if not raw or raw.translate(None, _TIME_DIGITS):  # what is left is no digit
            raise ValueError
        return int.from_bytes(binascii.a2b_base64(raw.translate(_FROM_TIME)), "big")
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError(f"not a time: {digits!r}") from None


def _is_hex(value: str, digits: int) -> bool:
    """`digits` lowercase hex digits, as hashlib's hexdigest and secrets.token_hex write
    them (so the short form reads back as the same text)."""
    return len(value) == digits and value.strip(_HEX_DIGITS) == ""


def _candidate_rows(considered: list[Any]) -> list[Any] | None:
    rows: list[Any] = []
    before: tuple[Any, Any] | None = None  # (load, capacity) of the row before
    for candidate in considered:
        if type(candidate) is not dict or tuple(candidate) != CANDIDATE_COLUMNS:
            return None  # another shape: kept as it is
        agent_id, load, capacity, status = candidate.values()
        if status != _DEFAULT_STATUS or before is None:
            row = [agent_id, load, capacity] + ([] if status == _DEFAULT_STATUS else [status])
        elif _same(load, before[0]) and _same(capacity, before[1]):
            row = agent_id
        elif _same(capacity, before[1]):
            row = [agent_id, load]
        else:
            row = [agent_id, load, capacity]
        rows.append(row)
        before = (load, capacity)
    return rows


def _same(value: Any, other: Any) -> bool:
    """Equal, and of one type (so that 8.0 after 8 is written, and reads back a float)."""
    return type(value) is type(other) and value == other


def _is_default(value: Any, default: Any) -> bool:
    """The value is the default and reads back as it: of its type (so not 300 for 300.0,
    nor True for 1), or for a text, any str, as JSON writes a StrEnum's member (placement's
    Strategy) and reads it back, in either form, as its text."""
    if type(default) is str:
        return isinstance(value, str) and value == default
    return type(value) is type(default) and value == default


def state_row(state: dict[str, Any], topic: str, originator_id: Any = None) -> list[Any] | None:
    """A compacted state as the row of its class's ROW_FORMS entry; None when the class
    has none, or the state not exactly its columns (and its `from_subject` fields equal
    to `originator_id`), as in a later class_version: then it is written as an object."""
    form = _ROWS.get(topic)
    if form is None or len(state) != len(form.names) + len(form.from_subject):
        return None
    for name in form.from_subject:
        if name not in state or type(originator_id) is not str or state[name] != originator_id:
            return None
    try:
        row = [state[name] for name in form.names]
    except KeyError:
        return None
    defaults = form.defaults
    while len(row) > form.required and _is_default(row[-1], defaults[len(row) - 1]):
        row.pop()
    return row


def expand_state(state: dict[str, Any] | list[Any], topic: str | None = None,
                 originator_id: Any = None) -> dict[str, Any]:
    """A decoded state with compact forms replaced by the values they stand for (a row
    made a dict of its class's fields, in the class's order; the rest in place).
    `originator_topic` is put back by LogMapper, which knows the class."""
    if type(state) is list:
        state = _from_row(state, topic, originator_id)
    elif type(state) is not dict:
        raise ValueError(f"an event's state is an object or a row, not {type(state)}")
    else:
        appended = _APPENDED.get(topic or "")
        if appended is not None:  # an object written before a column was appended
            for name, default in appended:
                state.setdefault(name, default)
    timestamp = state.get("timestamp")
    if type(timestamp) is str:  # a datetime's long form decodes to a datetime
        state["timestamp"] = EPOCH + time_of(timestamp) * _MICROSECOND
    elif type(timestamp) is int:  # events written before the short time
        state["timestamp"] = EPOCH + timestamp * _MICROSECOND
    fingerprint = state.get("fingerprint")
    if type(fingerprint) is str and len(fingerprint) == _FINGERPRINT_B64:
        state["fingerprint"] = _hex_of(fingerprint)
    token = state.get("token")
    if type(token) is str and len(token) == _TOKEN_SHORT and token[0] == _TOKEN_MARK:
        state["token"] = _hex_of(token[1:])
    considered = state.get("considered")
    if type(considered) is list and considered and type(considered[0]) is list:
        state["considered"] = _candidates(considered)
    return state


def _hex_of(short: str) -> str:
    """The hex digits of a short form: URL-safe base64 without its one `=` of padding
    (as base64.urlsafe_b64decode reads it, at half the cost: every replay reads these)."""
    return binascii.a2b_base64(short.replace("-", "+").replace("_", "/") + "=").hex()


def _candidates(rows: list[Any]) -> list[dict[str, Any]]:
    candidates = []
    load: Any = None
    capacity: Any = None
    for row in rows:
        if type(row) is str:  # the load and capacity of the row before, healthy
            candidates.append({"agent_id": row, "load": load, "capacity": capacity,
                               "status": _DEFAULT_STATUS})
            continue
        load = row[1]
        if len(row) > 2:  # else the capacity of the row before
            capacity = row[2]
        candidates.append({"agent_id": row[0], "load": load, "capacity": capacity,
                           "status": row[3] if len(row) == 4 else _DEFAULT_STATUS})
    return candidates


def _from_row(row: list[Any], topic: str | None, originator_id: Any) -> dict[str, Any]:
    form = _ROWS.get(topic or "")
    if topic is None or form is None:
        raise ValueError(f"a row for {topic!r}, which has no row form")
    count = len(row)
    if not form.required <= count <= len(form.names):
        raise ValueError(f"a row of {count} values for {topic}, which has "
                         f"{form.required} to {len(form.names)}")
    if form.from_subject and originator_id is None:
        raise ValueError(f"a row for {topic} without its aggregate id")
    plan = _PLANS.get(topic)
    if plan is None:
        plan = _PLANS[topic] = _plan(topic, form)
    state: dict[str, Any] = {}
    for name, index, default in plan:
        if index < 0:
            state[name] = originator_id
        elif index < count:
            state[name] = row[index]
        else:
            state[name] = list(default) if type(default) is list else default
    return state


# How a row is made a dict, by topic: (field, its index in the row or -1 for the
# aggregate id, its default), in the order of the class's fields.
_PLANS: dict[str, tuple[tuple[str, int, Any], ...]] = {}


def _plan(topic: str, form: _Compiled) -> tuple[tuple[str, int, Any], ...]:
    """The fields in the class's own order, as the long form and the event have them;
    in the row's order (then the aggregate id's) when the class is not to be had."""
    written = (*form.names, *form.from_subject)
    try:
        fields = [f.name for f in dataclasses.fields(resolve_topic(topic))]
    except Exception:  # an unknown class: the Mapper says so when it needs it
        fields = []
    order = [name for name in fields if name in written]
    if len(order) != len(written):
        order = list(written)
    return tuple((name, form.names.index(name) if name in form.names else -1,
                  form.defaults[form.names.index(name)] if name in form.names else None)
                 for name in order)
