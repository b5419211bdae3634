"""Probes of the subject, who sends a command: an agent's body naming another agent than
its subject (`other_agent`, refused unauthorized), and a sender token that is not an id
(`bad_sender`, refused invalid_request)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import strategies as st

from domain.fields import MAX_COMMAND_BYTES
from infra import names as n
from tests.fuzz.payloads.agents import own_agent_id
from tests.fuzz.payloads.bodies import hostile
from tests.fuzz.payloads.commands import SPECS
from tests.fuzz.payloads.probe import INVALID, TOO_LARGE, UNAUTHORIZED, Pairs, Probe, render
from tests.fuzz.payloads.spec import Spec, mutated_object, obj
from tests.fuzz.payloads.text import invalid_id, invalid_sender, valid_id
from tests.fuzz.payloads.values import wrong_for_str

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
