"""Hypothesis strategies for hostile command payloads.

Every payload is refused *by construction* (the expected outcome travels with it in a
`Probe`): malformed bytes, bodies over the 64 KiB limit, and valid-looking objects with at
least one mutation that the strict models must refuse (a missing required field, an
unknown field, a value of the wrong type or out of range, an identifier that is not one
NATS subject token, deep nesting...). Bodies are rendered by hand (`render`), not by a
JSON library, so they can hold what libraries refuse to write: NaN and Infinity, integers
of any size, duplicate keys, nesting thousands deep, lone surrogate escapes.

An agent's command goes out on its own subject (`<prefix>.agent.<id>.<command>`), so its
`agent_id` member is either left out or the subject's (`SELF` here); a body naming another
agent is refused `unauthorized` before it is validated (`other_agent`). A subject whose
sender token is not an id is refused `invalid_request` whatever its body (`bad_sender`).

The semantic probes (valid shape, refused for the state of the aggregate: not_found,
conflict, stale_token, or accepted as a documented no-op repeat) need the ids and tokens
of a live world; they are built by `semantic_probes` in `tests/fuzz/world.py`.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import strategies as st

from domain.fields import MAX_COMMAND_BYTES
from domain.identities.identity import ROLES
from infra import names as n

# --- outcomes -----------------------------------------------------------------------

OK = "ok"  # accepted without a write (a documented no-op repeat, or a read)
INVALID = "invalid_request"
TOO_LARGE = "payload_too_large"
NOT_FOUND = "not_found"
CONFLICT = "conflict"
STALE = "stale_token"
UNAUTHORIZED = "unauthorized"

# The agent the subject of an agent's command names, unless a probe says otherwise.
SELF = "fz-self"


@dataclass(frozen=True)
class Probe:
    """One payload, what the orchestrator may answer, and where it came from."""

    data: bytes
    expect: frozenset[str]
    category: str
    # The body is not JSON at all: the refusal must say so (detail type json_invalid).
    not_json: bool = False
    # The sender token of the subject: the agent of an agent's command (None: SELF), the
    # identity of a client's (None: the tests'); a catalog query's subject has none.
    sender: str | None = None
    # An invalid_request that is not about the body's fields (the subject, a reserved
    # name) has no details.
    bare: bool = False

    def __repr__(self) -> str:  # short enough for a failure report
        shown = self.data if len(self.data) <= 300 else (
            self.data[:200] + b"...<%d bytes>..." % len(self.data) + self.data[-60:])
        sender = "" if self.sender is None else f", sender={self.sender!r}"
        return f"Probe({self.category}, expect={sorted(self.expect)}{sender}, data={shown!r})"


def sized(data: bytes, category: str, not_json: bool = False) -> Probe:
    """An invalid body: invalid_request, or payload_too_large when over the limit."""
    if len(data) > MAX_COMMAND_BYTES:
        return Probe(data, frozenset({TOO_LARGE}), category)
    return Probe(data, frozenset({INVALID}), category, not_json)


# --- rendering ----------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A JSON text fragment written as is (NaN, 1e400, a deep nesting, a bad escape)."""

    text: str


@dataclass(frozen=True)
class Pairs:
    """A JSON object written with these members in this order, duplicates allowed."""

    items: tuple[tuple[str, Any], ...]


def render(value: Any) -> str:
    """JSON text of `value`, also for what strict JSON writers refuse."""
    if isinstance(value, Raw):
        return value.text
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, list | tuple):
        return "[" + ",".join(render(v) for v in value) + "]"
    if isinstance(value, Pairs):
        return "{" + ",".join(f"{render(k)}:{render(v)}" for k, v in value.items) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{render(k)}:{render(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot render {type(value)}")


# --- text ---------------------------------------------------------------------------

# Characters that have broken parsers, loggers and subject builders before: zero-width
# and direction marks, BOM, NUL and other controls, line separators, non-characters,
# the last code point, combining marks, look-alikes of '.', '*', '>' and of ASCII letters,
# and the NATS subject metacharacters themselves.
HOSTILE_CHARS = (
    "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u202e", "\u202d", "\u200f",
    "\u061c", "\x00", "\x01", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\ufffe",
    "\uffff", "\U0010ffff", "\U0001f4a9", "\u0301", "\uff0e", "\uff0a", "\uff1e",
    "\u2024", "\u0430", "\u0131", "\u0130", "\u00df", "\t", "\n", "\r", " ", ".", "*",
    ">", "$", "\\", '"', "/", ":", "%", "{", "}",
)
# Any code point but surrogates (which UTF-8 cannot carry; see `lone_surrogate`).
any_char = st.characters(exclude_categories=["Cs"]) | st.sampled_from(HOSTILE_CHARS)
odd_text = st.text(alphabet=any_char, max_size=40)

ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
CAPABILITY_CHARS = ID_CHARS + ".:/"
LABEL_KEY_CHARS = ID_CHARS + "./"


def pattern_text(chars: str, max_size: int, min_size: int = 1) -> st.SearchStrategy[str]:
    return st.text(alphabet=chars, min_size=min_size, max_size=max_size)


def _matches(chars: str, max_size: int) -> Callable[[str], bool]:
    compiled = re.compile(f"[{re.escape(chars)}]{{1,{max_size}}}")
    return lambda s: compiled.fullmatch(s) is not None


def not_matching(chars: str, max_size: int) -> st.SearchStrategy[str]:
    """Strings that `^[chars]{1,max_size}$` refuses, many of them nearly valid."""
    ok = _matches(chars, max_size)
    good = pattern_text(chars, min(max_size, 20))
    bad_char = any_char.filter(lambda c: c not in chars)
    spliced = st.builds(lambda a, c, b: a + c + b, st.text(alphabet=chars, max_size=10),
                        bad_char, st.text(alphabet=chars, max_size=10))
    return st.one_of(
        st.just(""),
        spliced,  # 'a.b', 'a*', 'a>', 'a b', 'a\u200bb', ...
        st.builds(lambda g, sep: g + sep + g, good, st.sampled_from([".", "*", ">", ".>",
                                                                     ".*.", " "])),
        st.sampled_from(["*", ">", ".", "..", " ", "a.*", "a.>", "$SRV", "_INBOX.x"]),
        good.map(lambda g: g + "\n"),  # '$' of Python's re matches before a final newline
        good.map(lambda g: "\n" + g),
        good.map(lambda g: g + "\x00"),
        st.integers(max_size + 1, max_size + 300).map(lambda n: "a" * n),  # too long
        st.text(alphabet=any_char, min_size=1, max_size=80),
    ).filter(lambda s: not ok(s))


invalid_id = not_matching(ID_CHARS, 64)
invalid_capability = not_matching(CAPABILITY_CHARS, 64)
invalid_kind = not_matching(CAPABILITY_CHARS, 128)
invalid_label_key = not_matching(LABEL_KEY_CHARS, 63)
valid_id = pattern_text(ID_CHARS, 64)


def _in_one_token(c: str) -> bool:
    """NATS carries the character inside one subject token: not a '.', a space or a
    control character (the server drops subjects with some of those)."""
    return c != "." and not c.isspace() and unicodedata.category(c) != "Cc"


# One NATS subject token that is not an id: `<prefix>.agent.<it>.<command>` and
# `<prefix>.<command>.<it>` reach the command's endpoint, which refuses them for their
# sender (a token with a '.' in it would make a subject no endpoint listens on).
invalid_sender = not_matching(ID_CHARS, 64).map(
    lambda s: "".join(c for c in s if _in_one_token(c))
).filter(lambda s: s != "" and not _matches(ID_CHARS, 64)(s))


def too_long(max_size: int) -> st.SearchStrategy[str]:
    """Longer than `max_size` characters (in code points, as pydantic counts)."""
    return st.builds(lambda c, extra: c * (max_size + extra), any_char,
                     st.integers(1, max_size + 10))


def lone_surrogate() -> st.SearchStrategy[Raw]:
    """A JSON string with an unpaired surrogate escape, which is not valid Unicode."""
    return st.builds(lambda hi, pre: Raw(render(pre)[:-1] + f"\\u{hi:04x}\""),
                     st.integers(0xD800, 0xDFFF), odd_text)


# --- values of the wrong type -------------------------------------------------------

NON_FINITE = st.sampled_from([Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e400"),
                              Raw("-1e400"), Raw("nan"), Raw("inf")])
HUGE_INTS = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**100]) | st.integers(
    min_value=2**64).map(lambda n: Raw(str(n)))


def deep(max_depth: int = 3000) -> st.SearchStrategy[Raw]:
    """Arrays or objects nested 2 to `max_depth` deep (the JSON parser's limit is lower)."""
    edges = [d for d in (2, 3, 64, 199, 200, 201, 254, 255, 256, 1000, 1001) if d < max_depth]
    depth = st.sampled_from([*edges, max_depth]) | st.integers(2, max_depth)

    def nest(kind: str, d: int) -> Raw:
        if kind == "list":
            return Raw("[" * d + "]" * d)
        return Raw('{"a":' * d + "1" + "}" * d)

    return st.builds(nest, st.sampled_from(["list", "object"]), depth)


small_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | odd_text,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(odd_text, children, max_size=4),
    max_leaves=12,
)
containers = st.lists(small_json, max_size=4) | st.dictionaries(odd_text, small_json,
                                                                max_size=4) | deep()


def wrong_for_str(nullable: bool = False) -> st.SearchStrategy[Any]:
    scalar = st.integers(-(2**63), 2**63 - 1) | st.floats() | st.booleans() | HUGE_INTS \
        | NON_FINITE
    base = scalar | containers
    return base if nullable else base | st.none()


def wrong_for_int(low: int, high: int | None) -> st.SearchStrategy[Any]:
    """Values an integer field in low..high (no upper bound: None) must refuse."""
    above: list[st.SearchStrategy[Any]] = [] if high is None else [
        st.integers(min_value=high + 1), HUGE_INTS]
    return st.one_of(
        st.integers(max_value=low - 1), *above,
        st.builds(float, st.integers(low, high if high is not None else 2**53)),  # 5.0
        st.floats().filter(lambda f: not f.is_integer() if math.isfinite(f) else True),
        NON_FINITE,
        st.integers(low, high).map(str),  # "5"
        st.sampled_from(["", "1e3", "0x10", "1_000", " 1", "one"]),
        st.booleans(), st.none(), containers, lone_surrogate(),
    )


def wrong_for_float(low: float, high: float, low_open: bool = False) -> st.SearchStrategy[Any]:
    def below(x: float) -> bool:
        return x <= low if low_open else x < low

    return st.one_of(
        st.floats(allow_nan=False).filter(lambda x: below(x) or x > high),
        st.integers(max_value=math.floor(low) - 1), st.integers(min_value=math.ceil(high) + 1),
        NON_FINITE,
        st.floats(low, high).map(repr),  # "0.5"
        st.booleans(), st.none(), containers, odd_text,
    )


wrong_for_bool = st.one_of(st.sampled_from([0, 1, 0.0, 1.0, "true", "false", "", "yes"]),
                           st.none(), containers, NON_FINITE, odd_text)


def wrong_for_list(wrong_item: st.SearchStrategy[Any], good_item: st.SearchStrategy[Any],
                   max_len: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        odd_text, st.integers(), st.none(), st.booleans(),
        st.dictionaries(odd_text, small_json, max_size=3),
        st.builds(lambda good, bad, at: [*good[:at], bad, *good[at:]],
                  st.lists(good_item, max_size=3), wrong_item, st.integers(0, 3)),
        st.lists(good_item, min_size=max_len + 1, max_size=max_len + 5),
        deep().filter(lambda r: r.text.startswith("[")),  # [[...]]: items are not strings
    )


def wrong_for_dict(good_key: st.SearchStrategy[str], bad_key: st.SearchStrategy[str],
                   good_value: st.SearchStrategy[Any], bad_value: st.SearchStrategy[Any],
                   max_len: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        odd_text, st.integers(), st.none(), st.lists(small_json, max_size=3),
        st.builds(lambda d, k, v: {**d, k: v}, st.dictionaries(good_key, good_value,
                                                              max_size=3), bad_key, good_value),
        st.builds(lambda d, k, v: {**d, k: v}, st.dictionaries(good_key, good_value,
                                                              max_size=3), good_key, bad_value),
        st.builds(lambda n: {f"k{i}": "v" for i in range(n)},
                  st.integers(max_len + 1, max_len + 10)),
        deep().filter(lambda r: r.text.startswith("{")),  # values are not strings
    )


# --- the command models -------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One field of a command model: values it accepts, and values it must refuse."""

    name: str
    valid: st.SearchStrategy[Any]
    wrong: st.SearchStrategy[Any] | None  # None: anything goes (`payload`, `result`)
    required: bool = False
    # Hostile values that ride along in an otherwise refused body (NaN, bad escapes...).
    noise: st.SearchStrategy[Any] | None = None


@dataclass(frozen=True)
class Spec:
    command: str
    fields: tuple[Field, ...]
    names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset(f.name for f in self.fields))


label_value = st.text(alphabet=any_char, max_size=20)
labels_valid = st.dictionaries(pattern_text(LABEL_KEY_CHARS, 20), label_value, max_size=3)
labels_wrong = wrong_for_dict(pattern_text(LABEL_KEY_CHARS, 20), invalid_label_key,
                              label_value, wrong_for_str() | too_long(256), 64)
meta_wrong = wrong_for_dict(pattern_text(LABEL_KEY_CHARS, 20), invalid_label_key,
                            label_value, wrong_for_str() | too_long(256), 32)
tag = st.text(alphabet=any_char, min_size=1, max_size=20)
tags_valid = st.lists(tag, max_size=3)
tags_wrong = wrong_for_list(wrong_for_str() | st.just("") | too_long(64), tag, 32)
capabilities_valid = st.lists(pattern_text(CAPABILITY_CHARS, 20), max_size=3)
capabilities_wrong = wrong_for_list(wrong_for_str() | invalid_capability,
                                    pattern_text(CAPABILITY_CHARS, 20), 64)

SERVICE = Spec("service", (
    Field("name", valid_id, wrong_for_str() | invalid_id, required=True),
    Field("address", st.text(alphabet=any_char, min_size=1, max_size=30),
          wrong_for_str() | st.just("") | too_long(253), required=True),
    Field("port", st.integers(0, 65535), wrong_for_int(0, 65535), required=True),
    Field("tags", tags_valid, tags_wrong),
    Field("meta", labels_valid, meta_wrong),
))


def obj(spec: Spec, noisy: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """A valid object of `spec`: required fields, and some of the optional ones. `noisy`
    mixes in the fields' hostile noise: only for bodies refused for another reason."""

    def value(f: Field) -> st.SearchStrategy[Any]:
        return f.valid | f.noise if noisy and f.noise is not None else f.valid

    required = {f.name: value(f) for f in spec.fields if f.required}
    optional = {f.name: value(f) for f in spec.fields if not f.required}
    return st.fixed_dictionaries(required, optional=optional)


service_valid = obj(SERVICE)
services_valid = st.lists(service_valid, max_size=2)
services_wrong = wrong_for_list(
    wrong_for_str() | st.deferred(lambda: mutated_object(SERVICE)), service_valid, 32)



def not_null(wrong: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The wrong values of a field that may be null: all of them but null."""
    return wrong.filter(lambda value: value is not None)


# An enrollment's policy: each part null (unbounded) or a bound.
policy_label_values = st.lists(label_value, max_size=3)
POLICY = Spec("policy", (
    Field("services", st.lists(valid_id, max_size=3) | st.none(),
          not_null(wrong_for_list(wrong_for_str() | invalid_id, valid_id, 64))),
    Field("capabilities", capabilities_valid | st.none(), not_null(capabilities_wrong)),
    Field("labels",
          st.dictionaries(pattern_text(LABEL_KEY_CHARS, 20), policy_label_values, max_size=3)
          | st.none(),
          not_null(wrong_for_dict(
              pattern_text(LABEL_KEY_CHARS, 20), invalid_label_key, policy_label_values,
              wrong_for_list(wrong_for_str() | too_long(256), label_value, 64), 64))),
    Field("max_capacity", st.integers(0, 100_000) | st.none(),
          not_null(wrong_for_int(0, 100_000))),
))
policy_valid = obj(POLICY) | st.none()
policy_wrong = st.one_of(odd_text, st.integers(), st.booleans(),
                         st.lists(small_json, max_size=3),
                         st.deferred(lambda: mutated_object(POLICY)))

agent_id = Field("agent_id", valid_id, wrong_for_str() | invalid_id, required=True)
# In an agent's command: left out, or the agent its subject names (a body naming another
# agent, well-formed or not, is refused unauthorized: `other_agent`).
own_agent_id = Field("agent_id", st.just(SELF), None)
identity_name = Field("name", valid_id, wrong_for_str() | invalid_id, required=True)
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

role = st.sampled_from(sorted(ROLES))
wrong_role = wrong_for_str() | st.sampled_from(["Agent", "agent ", " agent", "admin", "root",
                                                "", "agents", "operator\u200b"]) | odd_text
roles_valid = st.lists(role, max_size=5)
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
public_key_valid = pattern_text(BASE32, 55, 55).map(lambda s: "U" + s)
public_key_wrong = wrong_for_str() | st.one_of(
    pattern_text(BASE32, 55, 55).map(lambda s: "A" + s),  # an account key, not a user's
    pattern_text(BASE32, 55, 55).map(lambda s: "S" + s),  # a seed
    pattern_text(BASE32, 54, 54).map(lambda s: "U" + s),
    pattern_text(BASE32, 56, 56).map(lambda s: "U" + s),
    public_key_valid.map(str.lower),
    st.builds(lambda k, c, at: k[:at] + c + k[at + 1:], public_key_valid,
              st.sampled_from("0189=-_ a\u0430"), st.integers(1, 55)),
    public_key_valid.map(lambda k: k + "\n"),  # '$' of Python's re matches before it
    st.just(""),
)
scope_wrong = wrong_for_str() | st.sampled_from(["Read", "READ", "read ", "write", "",
                                                 "admin\u200b", "*"]) | odd_text

# A schedule's commands (domain/schedules/commands.py).
schedule_name = Field("name", pattern_text(ID_CHARS, 48), wrong_for_str()
                      | not_matching(ID_CHARS, 48), required=True)
# Flow control's fields of a task (domain/tasks/commands.py), in a submit and a template.
FLOW_FIELDS = (
    *(Field(key, pattern_text(ID_CHARS + ":", 30) | st.none(),
            not_null(wrong_for_str()) | not_matching(ID_CHARS + ":", 64))
      for key in ("concurrency_key", "fairness_key")),
    *(Field(key, labels_valid | st.none(), not_null(labels_wrong))
      for key in ("selector", "prefer")),
)
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

SPECS: dict[str, Spec] = {s.command: s for s in (
    *SCHEDULE_SPECS,
    LIMIT_SPEC,
    # An agent's commands, about itself.
    Spec(n.REGISTER, (
        own_agent_id,
        Field("capabilities", capabilities_valid, capabilities_wrong),
        Field("capacity", st.integers(0, 100_000), wrong_for_int(0, 100_000)),
        Field("labels", labels_valid, labels_wrong),
        Field("services", services_valid, services_wrong),
        Field("kinds", st.lists(pattern_text(CAPABILITY_CHARS, 30), max_size=3),
              wrong_for_list(wrong_for_str() | invalid_kind,
                             pattern_text(CAPABILITY_CHARS, 30), 64)),
        Field("replace", st.booleans(), wrong_for_bool),
        Field("instance_id", valid_id | st.none(), wrong_for_str(nullable=True) | invalid_id),
    )),
    Spec(n.DEREGISTER, (
        # No upper bound: an incarnation of 10**100 is well-formed (and not the current one).
        own_agent_id, Field("incarnation", st.integers(1, 2**63 - 1), wrong_for_int(1, None),
                            required=True),
    )),
    Spec(n.ASSIGNMENTS, (own_agent_id,)),
    Spec(n.SERVICES, (
        own_agent_id, Field("services", services_valid, services_wrong, required=True),
    )),
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
    # Submitters' commands.
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
    # Operators' commands.
    Spec(n.ADMIN_DRAIN, (agent_id,)),
    Spec(n.ADMIN_UNDRAIN, (agent_id,)),
    Spec(n.ADMIN_DEREGISTER, (agent_id,)),
    Spec(n.ADMIN_ENROLL, (
        agent_id,
        Field("ttl_s", st.floats(0, 604800, exclude_min=True) | st.integers(1, 604800),
              wrong_for_float(0, 604800, low_open=True)),
        Field("roles", roles_valid, wrong_for_list(wrong_role, role, 5)),
        Field("rotate", st.booleans(), wrong_for_bool),
        Field("policy", policy_valid, policy_wrong),
    )),
    Spec(n.ADMIN_REVOKE, (
        identity_name, Field("reason", st.text(alphabet=any_char, max_size=50),
                    wrong_for_str() | too_long(256)),
    )),
    Spec(n.ADMIN_IDENTITY_CREATE, (
        identity_name,
        Field("roles", st.lists(role, min_size=1, max_size=5),
              wrong_for_list(wrong_role, role, 5) | st.just([]), required=True),
        Field("public_key", public_key_valid, public_key_wrong, required=True),
    )),
    Spec(n.ADMIN_TOKEN_CREATE, (
        identity_name,
        Field("scope", st.sampled_from(["read", "admin"]), scope_wrong, required=True),
    )),
    # A read anyone allowed may send.
    Spec(n.CATALOG_QUERY, (
        Field("service", valid_id | st.none(), wrong_for_str(nullable=True) | invalid_id),
        Field("tags", tags_valid, tags_wrong),
        Field("labels", labels_valid, labels_wrong),
        Field("healthy_only", st.booleans(), wrong_for_bool),
    )),
)}


def unknown_key(spec: Spec) -> st.SearchStrategy[str]:
    """A member name the model does not have, often one that looks like one it has."""
    near = st.builds(lambda name, how: how(name), st.sampled_from(sorted(spec.names)),
                     st.sampled_from([str.upper, str.title, lambda s: s + " ",
                                      lambda s: " " + s, lambda s: s + "\u200b",
                                      lambda s: s.replace("_", "-"), lambda s: s + "\x00",
                                      lambda s: s[:-1], lambda s: "$" + s]))
    # agent_id where the model has none: a task report names no agent, its subject does.
    return (near | odd_text | st.sampled_from(["__proto__", "constructor", "_type_", "ok",
                                               "position", "id", "agent_id", "identity"])
            ).filter(lambda k: k not in spec.names)


_MUTATED: dict[str, st.SearchStrategy[Pairs]] = {}


def mutated_object(spec: Spec) -> st.SearchStrategy[Pairs]:
    """A valid object with 1 to 3 mutations, at least one of which the model must refuse.

    Each mutation leaves the object invalid whatever comes after it: a wrong value
    replaces every occurrence of its member, a duplicate puts the wrong value last (the
    last one wins), a removal only takes required members.
    """
    if spec.command in _MUTATED:
        return _MUTATED[spec.command]
    wrongs = [f for f in spec.fields if f.wrong is not None]
    typed = st.sampled_from(wrongs) if wrongs else st.nothing()
    required = [f.name for f in spec.fields if f.required]
    gone = st.sampled_from(required) if required else st.nothing()
    mutations = st.lists(st.sampled_from(["extra"] + (["wrong", "dup"] if wrongs else [])
                                         + (["missing"] if required else [])),
                         min_size=1, max_size=3)
    base = obj(spec, noisy=True)
    keys = unknown_key(spec)
    where = st.integers(0, 2**16)

    @st.composite
    def build(draw: st.DrawFn) -> Pairs:
        members = list(draw(base).items())
        members = list(draw(st.permutations(members))) if len(members) > 1 else members
        for kind in draw(mutations):
            if kind == "extra":
                at = draw(where) % (len(members) + 1)
                members.insert(at, (draw(keys), draw(small_json)))
            elif kind in ("wrong", "dup"):
                target = draw(typed)
                assert target.wrong is not None
                bad = draw(target.wrong)
                members = [(k, v) for k, v in members if k != target.name]
                if kind == "wrong":
                    members.insert(draw(where) % (len(members) + 1), (target.name, bad))
                else:  # a valid value first, the wrong one last: the last one wins
                    members.insert(0, (target.name, draw(target.valid)))
                    members.append((target.name, bad))
            else:
                name = draw(gone)
                members = [(k, v) for k, v in members if k != name]
        return Pairs(tuple(members))

    _MUTATED[spec.command] = build()
    return _MUTATED[spec.command]


# --- whole bodies -------------------------------------------------------------------

NOT_JSON = st.one_of(
    st.sampled_from([b"", b" ", b"\n", b"{", b"}", b"{]", b"{'a': 1}", b"{a: 1}",
                     b'{"a": 1,}', b'{"a" 1}', b"// {}", b"/* */ {}", b"\x00",
                     b"\xef\xbb\xbf{}", b"\xff\xfe{\x00}\x00", b"{\"a\": \"\xff\"}",
                     b'{"a": "\xc0\x80"}', b'{"a": "\xed\xa0\x80"}', b"{}{}", b"{} x",
                     b"undefined", b"True", b"None", b"NULL", b'{"a": 01}', b'{"a": .5}',
                     b'{"a": +1}', b'{"a": 0x10}', b'{"a": "\t"}', b'{"a": "\\x41"}']),
    st.binary(min_size=1, max_size=200).filter(lambda b: not _is_json(b)),
    st.builds(lambda b: b"\xef\xbb\xbf" + b, st.just(b'{"agent_id": "a1"}')),  # BOM
)


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


def _is_json(data: bytes) -> bool:
    """RFC 8259 JSON in UTF-8 (no NaN or Infinity), by the standard library's parser."""
    try:
        json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return True


def not_json(spec: Spec) -> st.SearchStrategy[Probe]:
    """Bytes that are not one JSON text: garbage, truncations, wrong encodings."""
    truncated = st.builds(lambda p, cut: render(p).encode()[:cut], mutated_object(spec),
                          st.integers(1, 40)).filter(lambda b: not _is_json(b))
    utf16 = st.builds(lambda p: render(p).encode("utf-16"), mutated_object(spec))
    bad_bytes = st.builds(
        lambda p, junk, at: (lambda b: b[:at] + junk + b[at:])(render(p).encode()),
        mutated_object(spec), st.sampled_from([b"\xff", b"\xc3", b"\x80", b"\xf4\x90\x80\x80",
                                               b"\xed\xa0\x80", b"\xc0\xaf"]),
        st.integers(0, 30))
    return st.one_of(NOT_JSON, truncated, utf16, bad_bytes.filter(lambda b: not _is_json(b))
                     ).map(lambda b: sized(b, "not-json", not_json=True))


def not_an_object() -> st.SearchStrategy[Probe]:
    """JSON, but not an object: scalars, arrays, NaN, deep nesting at the top."""
    value = st.one_of(st.lists(small_json, max_size=4), st.none(), st.booleans(),
                      st.integers(), st.floats(), odd_text, deep(), NON_FINITE, HUGE_INTS)
    return value.map(lambda v: sized(render(v).encode(), "not-an-object"))


def too_large(spec: Spec) -> st.SearchStrategy[Probe]:
    """Over 64 KiB (up to ~110 KB), in a field or as padding, also just past the limit."""

    def pad(body: Pairs, target: int, chunk: str) -> Probe:
        base = render(Pairs((*body.items, ("zz_pad", "")))).encode()
        unit = len(render(chunk).encode()) - 2  # as written in JSON, escapes included
        count = max(0, (target - len(base)) // unit)
        data = render(Pairs((*body.items, ("zz_pad", chunk * count)))).encode()
        return sized(data, "size-boundary" if abs(target - MAX_COMMAND_BYTES) < 64 else
                     "too-large")

    target = st.one_of(st.integers(MAX_COMMAND_BYTES - 8, MAX_COMMAND_BYTES + 8),
                       st.integers(MAX_COMMAND_BYTES + 1, 110_000))
    chunk = st.sampled_from(["x", "\u00e9", "\u20ac", "\U0001f4a9", "\u200b", "\\", '"',
                             "\x00"])
    valid_body = obj(spec).map(lambda d: Pairs(tuple(d.items())))
    # A field of a valid object made huge: refused for its size before it is parsed.
    huge_field = st.builds(
        lambda d, name, c, n: Pairs((*d.items(), (name, c * (n // (len(render(c)) - 2))))),
        obj(spec), st.sampled_from(sorted(spec.names)), chunk,
        st.integers(MAX_COMMAND_BYTES + 7, 110_000),  # bytes of the field, escapes included
    ).map(lambda p: Probe(render(p).encode(), frozenset({TOO_LARGE}), "too-large"))
    return st.one_of(
        # The padding is an unknown member: at or under the limit, invalid_request.
        st.builds(pad, mutated_object(spec) | valid_body, target, chunk),
        huge_field,
    )


def invalid_object(spec: Spec) -> st.SearchStrategy[Probe]:
    return mutated_object(spec).map(lambda p: sized(render(p).encode(), "mutated"))


_HOSTILE: dict[str, st.SearchStrategy[Probe]] = {}


def hostile(spec: Spec) -> st.SearchStrategy[Probe]:
    """Every kind of refused-for-its-form payload of one command, mutated objects first."""
    if spec.command not in _HOSTILE:
        branches = {"mutated": invalid_object(spec), "not-json": not_json(spec),
                    "not-an-object": not_an_object(), "too-large": too_large(spec)}
        weights = ["mutated"] * 6 + ["not-json"] * 2 + ["not-an-object", "too-large"]
        _HOSTILE[spec.command] = st.sampled_from(weights).flatmap(lambda b: branches[b])
    return _HOSTILE[spec.command]


# --- the subject: who sends it ------------------------------------------------------

# Agents' commands whose body has an agent_id: it must be the subject's, or is refused.
NAMES_ITS_AGENT = frozenset(c for c, s in SPECS.items() if own_agent_id in s.fields)


def _parsed_object(data: bytes) -> bool:
    """The orchestrator's JSON parser takes it, and it is an object (deep nesting, NaN or
    lone surrogates make it invalid_request instead, as `hostile` checks)."""
    try:
        return isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        return False


def other_agent(spec: Spec, senders: st.SearchStrategy[str],
                others: st.SearchStrategy[Any]) -> st.SearchStrategy[Probe]:
    """An agent's command whose body names another agent than its subject: a real one, a
    made-up one, no id at all; the rest of the body valid or not, the subject's own id
    first as a duplicate or not (the last one wins). Refused unauthorized, before it is
    validated."""
    if spec.command not in NAMES_ITS_AGENT:
        return st.nothing()
    named = st.one_of(others, valid_id, invalid_id, wrong_for_str())
    base = obj(spec).map(lambda d: Pairs(tuple(d.items()))) | mutated_object(spec)

    @st.composite
    def build(draw: st.DrawFn) -> Probe:
        sender = draw(senders)
        other = draw(named.filter(lambda v: v != sender))
        members = [(k, v) for k, v in draw(base).items if k != "agent_id"]
        first = draw(st.booleans())  # the subject's own id first: it does not help
        at = draw(st.integers(0, len(members)))
        members.insert(at, ("agent_id", other))
        if first:
            members.insert(0, ("agent_id", sender))
        data = render(Pairs(tuple(members))).encode()
        if len(data) > MAX_COMMAND_BYTES:
            return Probe(data, frozenset({TOO_LARGE}), "other-agent", sender=sender)
        return Probe(data, frozenset({UNAUTHORIZED}), "other-agent", sender=sender)

    return build().filter(lambda probe: TOO_LARGE in probe.expect
                          or _parsed_object(probe.data))


def bad_sender(spec: Spec) -> st.SearchStrategy[Probe]:
    """A subject whose sender token (an agent's id, a client's identity) is not an id, with
    a valid body or a hostile one: refused invalid_request for the subject, before the body
    is looked at. A catalog query's subject names nobody: nothing to probe."""
    if spec.command not in n.AGENT_COMMANDS + n.CLIENT_COMMANDS:
        return st.nothing()
    body = obj(spec).map(lambda d: render(d).encode()) | hostile(spec).map(lambda p: p.data)
    return st.builds(
        lambda data, sender: Probe(data, frozenset({INVALID}), "bad-sender", sender=sender,
                                   bare=True),
        body, invalid_sender)
