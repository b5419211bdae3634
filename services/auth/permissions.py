"""What each role may publish and subscribe: the one table the auth callout issues from
and the forged-identity tests read (DESIGN section 8).

Everything not allowed here is denied by the NATS server itself: the event stream,
`$JS.API`, the KV buckets, other identities' subjects and inboxes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from infra import names as n
from infra.names import Names


class RoleName(StrEnum):
    AGENT = "agent"
    SUBMITTER = "submitter"
    OPERATOR = "operator"
    READER = "reader"
    AUDITOR = "auditor"


@dataclass
class Permissions:
    """Subjects an identity may publish to and subscribe to (NATS user permissions)."""

    pub_allow: set[str] = field(default_factory=set)
    pub_deny: set[str] = field(default_factory=set)
    sub_allow: set[str] = field(default_factory=set)

    def claims(self) -> dict[str, object]:
        """As the `nats` part of a user JWT (nats-io/jwt `Permissions`)."""
        pub: dict[str, list[str]] = {"allow": sorted(self.pub_allow)}
        if self.pub_deny:
            pub["deny"] = sorted(self.pub_deny)
        return {"pub": pub, "sub": {"allow": sorted(self.sub_allow)}}


def _agent(names: Names, identity: str, grant: Permissions) -> None:
    grant.pub_allow |= {names.heartbeat(identity), f"{names.prefix}.agent.{identity}.>",
                        names.command(n.CATALOG_QUERY)}
    # Its own assignments and control messages come from the orchestrator only.
    grant.pub_deny |= {names.agent_tasks(identity), names.agent_control(identity)}
    grant.sub_allow |= {names.agent_tasks(identity), names.agent_control(identity),
                        names.catalog_changes_wildcard}


def _submitter(names: Names, identity: str, grant: Permissions) -> None:
    grant.pub_allow |= {names.client_command(c, identity) for c in n.SUBMITTER_COMMANDS}
    # Its tasks' outcomes and feeds: its own subjects, which no other identity may read.
    grant.sub_allow |= {names.task_outcomes(identity), names.task_feeds(identity)}


def _operator(names: Names, identity: str, grant: Permissions) -> None:
    _submitter(names, identity, grant)
    grant.pub_allow |= {names.client_command(c, identity) for c in n.OPERATOR_COMMANDS}


def _reader(names: Names, identity: str, grant: Permissions) -> None:
    grant.pub_allow.add(names.command(n.CATALOG_QUERY))
    grant.sub_allow.add(names.catalog_changes_wildcard)


def _reads_of(stream: str) -> set[str]:
    """Read a stream by getting its messages: a direct get answers only the requester's
    own inbox. No consumer of any kind: nats-server does not check a push consumer's
    deliver subject against its creator's permissions, so the right to create one is
    the right to have the server publish a stream's messages anywhere (an agent's
    control subject, say), and a named one could change or stop the orchestrator's."""
    return {
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}", f"$JS.API.DIRECT.GET.{stream}.>",
    }


def _auditor(names: Names, identity: str, grant: Permissions) -> None:
    """Read the event log (and the heartbeats and the liveness record, for what-if), and
    change nothing; follow the log by the orchestrator's notice of each position it
    applied, reading what is new by direct gets."""
    grant.pub_allow |= (_reads_of(names.events_stream) | _reads_of(names.heartbeats_stream)
                        | _reads_of(names.liveness_stream))
    grant.sub_allow.add(names.log_appended)


_GRANTS = {
    RoleName.AGENT: _agent,
    RoleName.SUBMITTER: _submitter,
    RoleName.OPERATOR: _operator,
    RoleName.READER: _reader,
    RoleName.AUDITOR: _auditor,
}


def permissions(names: Names, identity: str, roles: set[RoleName]) -> Permissions:
    """The union of the roles' grants, plus the identity's own reply inbox."""
    grant = Permissions()
    grant.sub_allow.add(f"{names.inbox_prefix(identity)}.>")
    for role in sorted(roles):
        _GRANTS[role](names, identity, grant)
    return grant
