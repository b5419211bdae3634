"""Where one application's log lives on JetStream: its stream, subjects and headers."""

# One stream per application, named from the application's name:
#
#     stream    ES_<app>
#     events    es.<app>.<purpose>.<u|s>.<originator id>.<version>  (purpose "events", ...)
#     tracking  es.<app>.tracking.<upstream application>
#
# Names are escaped into single subject tokens injectively, so two different application
# names never share a stream or subjects, and any string originator id is a valid token.

from __future__ import annotations

import string
from dataclasses import dataclass
from uuid import UUID

TOPIC_HEADER = "Es-Topic"
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"

EVENTS = "events"
TRACKING = "tracking"

_SAFE = frozenset(string.ascii_letters + string.digits + "-_")
_ESCAPE = "~"
_EMPTY = "~"  # never an escape's output (those are ~XX), so the encoding stays injective
_UUID_KIND = "u"
_STR_KIND = "s"


def escape(text: str) -> str:
    """Encode any text as one non-empty subject token (also valid in a stream name)."""
    if not text:
        return _EMPTY
    if all(ch in _SAFE for ch in text):
        return text
    parts: list[str] = []
    for ch in text:
        if ch in _SAFE:
            parts.append(ch)
        else:
            parts.extend(f"{_ESCAPE}{byte:02x}" for byte in ch.encode("utf-8"))
    return "".join(parts)


def unescape(token: str) -> str:
    """Inverse of `escape`."""
    if token == _EMPTY:
        return ""
    if _ESCAPE not in token:
        return token
    out = bytearray()
    i = 0
    while i < len(token):
        if token[i] == _ESCAPE:
            out.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            out.extend(token[i].encode("ascii"))
            i += 1
    return out.decode("utf-8")


def id_tokens(originator_id: UUID | str) -> str:
    """Two tokens, kind and value, so a UUID and a string id never read back as each other."""
    if isinstance(originator_id, UUID):
        return f"{_UUID_KIND}.{originator_id.hex}"
    return f"{_STR_KIND}.{escape(originator_id)}"


def parse_event_subject(subject: str) -> tuple[UUID | str, int]:
    """(originator id, version) of an event subject `...<kind>.<id>.<version>`."""
    _, kind, token, version = subject.rsplit(".", 3)
    originator_id: UUID | str = UUID(token) if kind == _UUID_KIND else unescape(token)
    return originator_id, int(version)


@dataclass(frozen=True)
class LogNames:
    """The stream and subjects of one application's log."""

    application_name: str

    @property
    def token(self) -> str:
        return escape(self.application_name)

    @property
    def stream(self) -> str:
        return f"ES_{self.token}"

    @property
    def root(self) -> str:
        return f"es.{self.token}"

    @property
    def stream_subjects(self) -> list[str]:
        return [f"{self.root}.>"]

    def event_subject(self, purpose: str, originator_id: UUID | str, version: int) -> str:
        return f"{self.root}.{escape(purpose)}.{id_tokens(originator_id)}.{version}"

    def sequence_filter(self, purpose: str, originator_id: UUID | str) -> str:
        """Every event of one aggregate sequence."""
        return f"{self.root}.{escape(purpose)}.{id_tokens(originator_id)}.*"

    def purpose_filter(self, purpose: str) -> str:
        """Every event of every aggregate (the application sequence, for `events`)."""
        # Three tokens after the purpose: never matches a tracking subject, which has one.
        return f"{self.root}.{escape(purpose)}.*.*.*"

    def tracking_subject(self, upstream_application: str) -> str:
        return f"{self.root}.{TRACKING}.{escape(upstream_application)}"
