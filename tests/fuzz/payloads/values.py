"""Values of every JSON type, and the wrong values a field of each type must refuse
(`wrong_for_str`, `wrong_for_int`, ...); with the labels and capabilities that several
command families share."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.payloads.probe import Raw
from tests.fuzz.payloads.text import (
    CAPABILITY_CHARS,
    LABEL_KEY_CHARS,
    any_char,
    invalid_capability,
    invalid_label_key,
    lone_surrogate,
    odd_text,
    pattern_text,
    too_long,
)

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


def not_null(wrong: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The wrong values of a field that may be null: all of them but null."""
    return wrong.filter(lambda value: value is not None)


# Labels (an agent's, a service's meta, a task's selector) and capabilities.
label_value = st.text(alphabet=any_char, max_size=20)
labels_valid = st.dictionaries(pattern_text(LABEL_KEY_CHARS, 20), label_value, max_size=3)
labels_wrong = wrong_for_dict(pattern_text(LABEL_KEY_CHARS, 20), invalid_label_key,
                              label_value, wrong_for_str() | too_long(256), 64)
capabilities_valid = st.lists(pattern_text(CAPABILITY_CHARS, 20), max_size=3)
capabilities_wrong = wrong_for_list(wrong_for_str() | invalid_capability,
                                    pattern_text(CAPABILITY_CHARS, 20), 64)
