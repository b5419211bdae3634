"""Enrollment policies and revocation without a server: the claims a policy allows, the
Identity aggregate and the identity projection holding it, the gate refusing revoked
senders, and the CLI flags that state a policy."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from domain.agents.commands import DeclareServices, RegisterAgent
from domain.errors import CommandRefused, ErrorCode
from domain.identities.commands import EnrollAgent
from domain.identities.identity import Identity
from domain.identities.policy import check_claims, policy_data, violations
from infra.caller import current_identity
from infra.log.format.codec import create_mapper
from projections.access import Access
from services.auth.gate import AccessGate
from services.cli.auth import CommandFailed, _policy
from services.cli.main import build_parser

POLICY = policy_data(services=["web"], capabilities=["cpu"], labels={"zone": ["eu", "us"]},
                     max_capacity=4)


def fields(found: list[dict[str, Any]]) -> list[str]:
    return [f["field"] for f in found]


class TestClaims:
    def test_no_policy_allows_anything(self) -> None:
        assert violations(None, services=["payments-db"], capabilities=["gpu"],
                          labels={"zone": "ap"}, capacity=100_000) == []

    def test_claims_within_the_policy_pass(self) -> None:
        assert violations(POLICY, services=["web", "web"], capabilities=["cpu"],
                          labels={"zone": "us"}, capacity=4) == []

    def test_each_claim_outside_the_policy_is_named(self) -> None:
        found = violations(POLICY, services=["web", "payments-db"], capabilities=["gpu"],
                           labels={"zone": "ap", "tier": "gold"}, capacity=5)
        assert fields(found) == ["services", "capabilities", "labels.zone", "labels.tier",
                                 "capacity"]
        assert {f["type"] for f in found} == {"policy"}

    def test_a_part_left_out_bounds_nothing(self) -> None:
        capacity_only = policy_data(None, None, None, max_capacity=2)
        assert violations(capacity_only, services=["any"], capabilities=["gpu"],
                          labels={"k": "v"}, capacity=2) == []
        assert fields(violations(capacity_only, capacity=3)) == ["capacity"]

    def test_an_empty_part_allows_none_of_that_claim(self) -> None:
        no_services = policy_data([], None, {}, None)
        assert fields(violations(no_services, services=["web"], labels={"k": "v"})) == [
            "services", "labels.k"]

    def test_a_refusal_is_unauthorized_and_says_the_first_problem(self) -> None:
        with pytest.raises(CommandRefused) as refused:
            check_claims("w1", POLICY, services=["payments-db"], capacity=9)
        assert refused.value.code == ErrorCode.UNAUTHORIZED
        assert refused.value.message == (
            "agent w1 may not claim that: service 'payments-db' is not in the enrollment "
            "policy (and 1 more)")
        assert fields(refused.value.details) == ["services", "capacity"]


def through_the_log(events: Sequence[Any], drop: str | None = None) -> list[Any]:
    """The events as the log gives them back; `drop`: an attribute left out, as in an
    event recorded before it existed."""
    mapper = create_mapper()
    back = []
    for event in events:
        stored = mapper.to_stored_event(event)
        if drop is not None:
            state = orjson.loads(stored.state)
            state.pop(drop, None)
            stored = dataclasses.replace(stored, state=orjson.dumps(state))
        back.append(mapper.to_domain_event(stored))
    return back


class TestIdentity:
    def test_an_enrollment_records_its_policy_and_the_next_replaces_it(self) -> None:
        identity = Identity("w1", ["agent"], None, "op")
        identity.issue_enrollment("d1", 1e12, ["agent"], False, "op", POLICY)
        assert identity.policy == POLICY
        identity.issue_enrollment("d2", 1e12, ["agent"], False, "op")
        assert identity.policy is None

        replayed: Any = None
        for event in through_the_log(identity.collect_events()):
            replayed = event.mutate(replayed)
        assert replayed.policy is None and replayed.version == 3

    def test_an_enrollment_recorded_before_policies_has_none(self) -> None:
        identity = Identity("w1", ["agent"], None, "op")
        identity.issue_enrollment("d1", 1e12, ["agent"], False, "op", POLICY)
        replayed: Any = None
        for event in through_the_log(identity.collect_events(), drop="policy"):
            replayed = event.mutate(replayed)
        assert replayed.policy is None

    def test_a_carried_identity_keeps_its_policy(self) -> None:
        identity = Identity("w1", ["agent"], None, "op")
        identity.issue_enrollment("d1", 1e12, ["agent"], False, "op", POLICY)
        identity.collect_events()
        identity.carry_forward()
        carried = through_the_log(identity.collect_events())[0]
        assert carried.mutate(None).policy == POLICY


@dataclasses.dataclass
class Recorded:
    position: int
    name: str
    payload: dict[str, Any]
    aggregate_id: str = "w1"
    kind: str = "identity"
    event_id: str = "e"
    recorded_at: datetime = datetime(2026, 1, 1, tzinfo=UTC)

    def data(self) -> dict[str, Any]:
        return self.payload


def an_access(*events: tuple[str, dict[str, Any]]) -> Access:
    access = Access()
    created = {"name": "w1", "roles": ["agent"], "public_key": None, "created_by": "op"}
    for position, (name, data) in enumerate((("Created", created), *events), start=1):
        access.apply(Recorded(position, name, data))
    return access


class TestProjection:
    def test_the_projection_holds_the_latest_policy(self) -> None:
        access = an_access(("EnrollmentIssued", {"roles": ["agent"], "policy": POLICY}))
        assert access.policy_of("w1") == POLICY and not access.is_revoked("w1")
        access = an_access(("EnrollmentIssued", {"roles": ["agent"], "policy": POLICY}),
                           ("EnrollmentIssued", {"roles": ["agent"]}))  # recorded before
        assert access.policy_of("w1") is None
        assert access.policy_of("nobody") is None and not access.is_revoked("nobody")

    def test_a_revoked_identity_is_known_as_revoked_until_enrolled_again(self) -> None:
        revoked: tuple[str, dict[str, Any]] = (
            "Revoked", {"reason": "r", "revoked_by": "op", "public_key": None})
        assert an_access(revoked).is_revoked("w1")
        enrolled: tuple[str, dict[str, Any]] = (
            "AgentEnrolled", {"public_key": "UKEY", "previous_key": None, "client": {}})
        assert not an_access(revoked, enrolled).is_revoked("w1")


class TestGate:
    async def run(self, gate: AccessGate, cmd: Any, sender: str, claims: bool) -> Any:
        async def handler(cmd: Any, causation_id: str) -> dict[str, Any]:
            return {"ok": True}

        async def as_sender() -> Any:
            current_identity.set(sender)
            return await gate.guard(handler, claims)(cmd, "c1")

        return await asyncio.create_task(as_sender())

    async def test_a_revoked_sender_is_refused_before_its_handler(self) -> None:
        revoked = ("Revoked", {"reason": "r", "revoked_by": "op", "public_key": None})
        gate = AccessGate(an_access(revoked))
        with pytest.raises(CommandRefused, match="w1 is revoked"):
            await self.run(gate, None, "w1", claims=False)
        assert await self.run(gate, None, "w2", claims=False) == {"ok": True}

    async def test_registrations_and_declarations_are_held_to_the_policy(self) -> None:
        gate = AccessGate(an_access(("EnrollmentIssued",
                                     {"roles": ["agent"], "policy": POLICY})))
        evil = {"name": "payments-db", "address": "evil.example", "port": 1}
        for cmd in (RegisterAgent(agent_id="w1", capacity=5),
                    DeclareServices(agent_id="w1", services=[evil])):
            with pytest.raises(CommandRefused) as refused:
                await self.run(gate, cmd, "w1", claims=True)
            assert refused.value.code == ErrorCode.UNAUTHORIZED
        fine = RegisterAgent(agent_id="w1", capacity=4, capabilities=["cpu"])
        assert await self.run(gate, fine, "w1", claims=True) == {"ok": True}


class TestCli:
    def parse(self, *flags: str) -> dict[str, Any] | None:
        return _policy(build_parser().parse_args(["enroll", "w1", *flags]))

    def test_no_policy_flag_no_policy(self) -> None:
        assert self.parse() is None
        assert self.parse("--role", "submitter", "--rotate") is None

    def test_the_flags_state_the_policy_the_model_takes(self) -> None:
        policy = self.parse("--service", "web", "--service", "api", "--label", "zone=eu",
                            "--label", "zone=us", "--label", "tier=", "--max-capacity", "4")
        assert policy == {"services": ["web", "api"],
                          "labels": {"zone": ["eu", "us"], "tier": [""]}, "max_capacity": 4}
        EnrollAgent.model_validate({"agent_id": "w1", "policy": policy})

    def test_a_label_without_a_key_is_refused(self) -> None:
        with pytest.raises(CommandFailed, match="KEY=VALUE"):
            self.parse("--label", "zone")
