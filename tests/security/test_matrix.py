"""The forged-identity matrix: every role against every subject of DESIGN section 8 and
the sensitive ones around it, with real credentials, as the NATS server decides.

What each case should get is read from the permissions table the auth callout issues
from (services/auth/permissions.py), so the test cannot drift from what is issued; a
list written out here besides says what no role may ever do, so that a table grown too
generous fails too. Every denied case leaves the event log as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest

from infra import names as n
from infra.names import Names
from services.auth.permissions import Permissions, RoleName, permissions
from tests.security.conftest import Connected, Secure

NAMES = Names("orch")
OTHER = "w9"  # an agent nobody here is
ROLES: dict[str, list[str]] = {  # identity -> roles
    "w1": ["agent"], "w2": ["agent", "submitter"], "sub1": ["submitter"],
    "op1": ["operator"], "rd1": ["reader"], "au1": ["auditor"],
}
EVENTS, HEARTBEATS = NAMES.events_stream, NAMES.heartbeats_stream
LIVENESS = NAMES.liveness_stream


def publish_subjects(me: str) -> list[str]:
    subjects = [NAMES.heartbeat(me), NAMES.heartbeat(OTHER),
                NAMES.agent_tasks(me), NAMES.agent_control(me), NAMES.command(n.CATALOG_QUERY)]
    for command in n.AGENT_COMMANDS:
        subjects += [NAMES.agent_command(me, command), NAMES.agent_command(OTHER, command)]
    for command in n.CLIENT_COMMANDS:
        subjects += [NAMES.client_command(command, me), NAMES.client_command(command, "op1")]
    return subjects + NEVER_PUBLISH + [
        f"$JS.API.STREAM.INFO.{EVENTS}", f"$JS.API.STREAM.MSG.GET.{EVENTS}",
        f"$JS.API.DIRECT.GET.{EVENTS}", f"$JS.API.DIRECT.GET.{HEARTBEATS}",
        f"$JS.API.DIRECT.GET.{LIVENESS}", "anything.else"]


# No identity but the orchestrator's may ever do these.
NEVER_PUBLISH = [
    NAMES.event("task", "t1", "Submitted"), NAMES.event("identity", "w1", "AgentEnrolled"),
    f"$JS.API.STREAM.DELETE.{EVENTS}", f"$JS.API.STREAM.PURGE.{EVENTS}",
    f"$JS.API.STREAM.UPDATE.{EVENTS}", f"$JS.API.STREAM.CREATE.{EVENTS}",
    f"$JS.API.CONSUMER.DELETE.{EVENTS}.failover", f"$JS.API.CONSUMER.CREATE.{EVENTS}.failover",
    f"$JS.API.STREAM.PURGE.{HEARTBEATS}", "$JS.API.INFO",
    "$KV.ORCH_LEADER.leader", "$JS.API.STREAM.DELETE.KV_ORCH_LEADER",
    n.AUTH_CALLOUT_SUBJECT, f"_INBOX.{OTHER}.forged-reply", "$SYS.REQ.SERVER.PING",
    NAMES.log_appended,  # the orchestrator's notice: a forged one would wake readers
    # A forged outcome or piece of output for a submitter: only the orchestrator sends them.
    NAMES.task_outcome("sub1", "t1"), NAMES.task_feed("sub1", "t1", "w1"),
    # No consumers, of any stream, by anyone: nats-server does not check a push
    # consumer's deliver subject against its creator's rights, so one delivering to an
    # agent's control subject would forge the orchestrator's messages (issue 29, 2).
    *(f"$JS.API.CONSUMER.CREATE.{stream}" for stream in (EVENTS, HEARTBEATS, LIVENESS)),
    *(f"$JS.API.CONSUMER.CREATE.{stream}.spy" for stream in (EVENTS, HEARTBEATS, LIVENESS)),
    f"$JS.API.CONSUMER.CREATE.{HEARTBEATS}.spy.{NAMES.heartbeat(OTHER)}",
    f"$JS.API.CONSUMER.DURABLE.CREATE.{HEARTBEATS}.spy",
    f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS}.failover", f"$JS.API.CONSUMER.INFO.{EVENTS}.failover",
    f"$JS.FC.{HEARTBEATS}.spy",
]
NEVER_SUBSCRIBE = [
    ">", "_INBOX.>", f"_INBOX.{OTHER}.>", NAMES.events_wildcard, "orch.agent.*.register",
    NAMES.agent_command_wildcard(n.TASK_COMPLETE), NAMES.client_command_wildcard(n.TASK_SUBMIT),
    NAMES.agent_tasks(OTHER), NAMES.agent_control(OTHER), n.AUTH_CALLOUT_SUBJECT, "$JS.API.>",
    "$KV.>", "$KV.ORCH_LEADER.>", "$SYS.>",
]


def subscribe_subjects(me: str) -> list[str]:
    # Task outcomes and feeds: its own (a submitter's), and another's.
    results = [NAMES.task_outcomes(me), NAMES.task_feeds(me), NAMES.task_outcomes("op1"),
               NAMES.task_feeds("sub1"), NAMES.task_outcome(OTHER, "t1")]
    return [NAMES.agent_tasks(me), NAMES.agent_control(me), f"_INBOX.{me}.>",
            NAMES.catalog_changes_wildcard, NAMES.heartbeats_wildcard, NAMES.log_appended,
            *results, *NEVER_SUBSCRIBE]


def _tokens_cover(pattern: list[str], subject: list[str]) -> bool:
    """NATS subject matching, for a subject that may itself hold wildcards: is every
    subject it names matched by the pattern?"""
    for i, token in enumerate(pattern):
        if token == ">":
            return i < len(subject)
        if i >= len(subject) or subject[i] == ">" or (token != "*" and (
                subject[i] == "*" or token != subject[i])):
            return False
    return len(pattern) == len(subject)


def allowed(patterns: set[str], subject: str) -> bool:
    return any(_tokens_cover(p.split("."), subject.split(".")) for p in patterns)


def expected_publish(grant: Permissions, subject: str) -> bool:
    return allowed(grant.pub_allow, subject) and not allowed(grant.pub_deny, subject)


def grant_of(identity: str) -> Permissions:
    return permissions(NAMES, identity, {RoleName(r) for r in ROLES[identity]})


@dataclass(frozen=True)
class Case:
    identity: str
    action: str  # publish or subscribe
    subject: str
    expected: bool


def cases() -> list[Case]:
    found = []
    for identity in ROLES:
        grant = grant_of(identity)
        for subject in publish_subjects(identity):
            found.append(Case(identity, "publish", subject, expected_publish(grant, subject)))
        for subject in subscribe_subjects(identity):
            found.append(Case(identity, "subscribe", subject,
                              allowed(grant.sub_allow, subject)))
    return found


class TestTheTableItself:
    @pytest.mark.parametrize("identity", sorted(ROLES))
    def test_no_role_may_do_what_only_the_orchestrator_may(self, identity):
        grant = grant_of(identity)
        for subject in NEVER_PUBLISH:
            assert not expected_publish(grant, subject), subject
        for subject in NEVER_SUBSCRIBE:
            assert not allowed(grant.sub_allow, subject), subject

    def test_an_auditor_reads_by_direct_gets_and_may_make_no_consumer(self):
        grant = grant_of("au1")
        for stream in (EVENTS, HEARTBEATS, LIVENESS):
            assert expected_publish(grant, f"$JS.API.DIRECT.GET.{stream}")
            assert not expected_publish(grant, f"$JS.API.CONSUMER.CREATE.{stream}")
        assert not [s for s in grant.pub_allow if s.startswith(("$JS.API.CONSUMER.", "$JS.FC."))]
        assert allowed(grant.sub_allow, NAMES.log_appended)

    def test_an_agent_may_speak_only_as_itself(self):
        grant = grant_of("w1")
        assert expected_publish(grant, NAMES.agent_command("w1", n.REGISTER))
        assert not expected_publish(grant, NAMES.agent_command(OTHER, n.REGISTER))
        assert not expected_publish(grant, NAMES.client_command(n.TASK_SUBMIT, "w1"))


async def test_every_role_against_every_subject_as_the_server_decides(secure: Secure):
    connections: dict[str, Connected] = {}
    for identity, roles in ROLES.items():
        if "agent" in roles:
            seed = await secure.enrolled_agent(identity, [r for r in roles if r != "agent"])
        else:
            seed = await secure.identity(identity, roles)
        connections[identity] = await secure.connect(identity, seed)
    before = await secure.orch.store.last_position()
    everything = cases()
    denied = [c for c in everything if not c.expected]
    wrong = [c for c in denied if not await server_denies(connections[c.identity], c)]
    # Nothing denied got in: harmful bodies on denied subjects changed nothing.
    assert await secure.orch.store.last_position() == before
    # What the table allows, the server allows (bodies that write nothing here).
    wrong += [c for c in everything if c.expected
              and await server_denies(connections[c.identity], c)]
    assert not wrong, "\n".join(f"{c.identity} {c.action} {c.subject}: expected "
                                f"{'allowed' if c.expected else 'denied'}" for c in wrong)
    assert len(denied) > 200 and len(everything) - len(denied) > 50


async def server_denies(connected: Connected, case: Case) -> bool:
    """Publish or subscribe as the case says; True if the server answered with a
    permissions violation for its subject."""
    connected.errors.clear()
    if case.action == "publish":
        body = orjson.dumps(harmful(case.subject)) if not case.expected else b"not json"
        await connected.nc.publish(case.subject, body)
    else:
        subscription = await connected.nc.subscribe(case.subject)
    await connected.nc.flush(timeout=5)
    await connected.nc.flush(timeout=5)
    if case.action == "subscribe":
        await subscription.unsubscribe()
    # nats-py lowercases the server's error line.
    return any("permissions violation" in e.lower() and case.subject.lower() in e.lower()
               for e in connected.errors)


def harmful(subject: str) -> dict[str, object]:
    """A body that would do damage if the publish went through."""
    if subject.endswith(("register", "submit")):
        return {"agent_id": "w1", "kind": "x"}
    if ".evt." in subject:
        return {"forged": True}
    if subject.startswith("$JS.API.CONSUMER."):  # the attack of issue 29, finding 2
        return {"stream_name": HEARTBEATS, "config": {
            "deliver_subject": NAMES.agent_control("w1"), "ack_policy": "none",
            "filter_subject": NAMES.heartbeat("w2")}}
    return {"agent_id": "w1", "name": "w1"}
