"""Whole bodies refused for their form: not JSON, JSON but not an object, over the
64 KiB limit, or an object mutated so that the model must refuse it; `hostile` mixes
them for one command."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from domain.fields import MAX_COMMAND_BYTES
from tests.fuzz.payloads.probe import TOO_LARGE, Pairs, Probe, render, sized
from tests.fuzz.payloads.spec import Spec, mutated_object, obj
from tests.fuzz.payloads.text import odd_text
from tests.fuzz.payloads.values import HUGE_INTS, NON_FINITE, deep, small_json

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
