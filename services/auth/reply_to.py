"""Where the orchestrator may answer a request: the requester's own inbox, nowhere else.

A request's reply subject is the requester's to choose. Answering whatever it names
would let any identity have the orchestrator publish onto a subject it may not publish
to itself (the leader lease, an event subject, another agent's control subject). So an
answer goes only to `_INBOX.<identity>[.…]`, and, when the subject of the command names
its sender, that identity's own. NATS holds the same line again: the serving user may
publish to `_INBOX.*.>` and its by-design subjects only (infra.auth.own_users).
"""

from __future__ import annotations

import re

from domain.fields import ID_PATTERN
from infra.names import INBOX_ROOT

_INBOX = re.compile(rf"{re.escape(INBOX_ROOT)}\.({ID_PATTERN[1:-1]})(\.[^\s.>*][^\s>*]*)?")
# nats-server's own inbox for the auth callout's answers (server/events.go).
CALLOUT_INBOX = re.compile(r"\$SYS\._INBOX\.[A-Za-z0-9]+\.[A-Za-z0-9]+")
MAX_REPLY_LENGTH = 256


def inbox_owner(reply: str) -> str | None:
    """The identity whose inbox `reply` is, or None when it is not an identity's inbox
    (any other subject, a wildcard, an empty token)."""
    if len(reply) > MAX_REPLY_LENGTH:
        return None
    found = _INBOX.fullmatch(reply)
    if found is None or ".." in reply or reply.endswith("."):
        return None
    return found.group(1)


def may_answer(reply: str, sender: str, bound: bool) -> bool:
    """Whether a request's answer may go to `reply`: an identity's inbox, and with
    `bound` (auth on) the inbox of `sender` when the command's subject names one."""
    owner = inbox_owner(reply)
    if owner is None:
        return False
    return not (bound and sender) or owner == sender


def is_callout_inbox(reply: str) -> bool:
    return len(reply) <= MAX_REPLY_LENGTH and CALLOUT_INBOX.fullmatch(reply) is not None
