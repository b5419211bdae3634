"""Text strategies: hostile characters, identifiers and their near misses (strings a
`^[chars]{1,n}$` pattern refuses), sender tokens that are not ids, over-long strings and
lone surrogates."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from hypothesis import strategies as st

from tests.fuzz.payloads.probe import Raw, render

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
