"""What an agent may claim about itself, bound to its identity by an operator at enrollment.

Discovery and placement believe what an agent registers: the services it offers go into
the catalog, its capabilities, labels and capacity decide which tasks it is given. A
policy bounds those claims. It is recorded as part of `EnrollmentIssued` (as a plain
dict, so the log and the identity projection hold it as JSON) and checked before a
registration or a declaration of services writes anything.

Each part of a policy is a bound of its own: a part left out (None) does not bound that
claim, so an enrollment without a policy leaves the agent as free as before policies
existed. A service name in one agent's policy is not reserved to it: a policy says what
its agent may claim, not what others may not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from domain.errors import CommandRefused, ErrorCode

PARTS = ("services", "capabilities", "labels", "max_capacity")
MAX_DETAILS = 20

Policy = Mapping[str, Any]


def policy_data(services: Iterable[str] | None, capabilities: Iterable[str] | None,
                labels: Mapping[str, Iterable[str]] | None,
                max_capacity: int | None) -> dict[str, Any]:
    """A policy as it is recorded: sorted and deduplicated, every part present."""
    return {
        "services": sorted(set(services)) if services is not None else None,
        "capabilities": sorted(set(capabilities)) if capabilities is not None else None,
        "labels": ({key: sorted(set(values)) for key, values in sorted(labels.items())}
                   if labels is not None else None),
        "max_capacity": max_capacity,
    }


def violations(policy: Policy | None, *, services: Iterable[str] = (),
               capabilities: Iterable[str] = (), labels: Mapping[str, str] | None = None,
               capacity: int | None = None) -> list[dict[str, Any]]:
    """Each claim the policy does not allow, as an error detail (field, problem, type)."""
    if policy is None:
        return []
    found: list[dict[str, Any]] = []

    def refuse(field: str, problem: str) -> None:
        found.append({"field": field, "problem": problem, "type": "policy"})

    allowed_services = policy.get("services")
    if allowed_services is not None:
        for name in dict.fromkeys(services):  # each name once, in the order claimed
            if name not in allowed_services:
                refuse("services", f"service {name!r} is not in the enrollment policy")
    allowed_capabilities = policy.get("capabilities")
    if allowed_capabilities is not None:
        for capability in capabilities:
            if capability not in allowed_capabilities:
                refuse("capabilities",
                       f"capability {capability!r} is not in the enrollment policy")
    allowed_labels = policy.get("labels")
    if allowed_labels is not None:
        for key, value in (labels or {}).items():
            if value not in allowed_labels.get(key, ()):
                refuse(f"labels.{key}", f"label {key}={value!r} is not in the enrollment policy")
    max_capacity = policy.get("max_capacity")
    if max_capacity is not None and capacity is not None and capacity > max_capacity:
        refuse("capacity", f"capacity {capacity} is above the enrollment policy's "
                           f"{max_capacity}")
    return found


def check_claims(agent_id: str, policy: Policy | None, *, services: Iterable[str] = (),
                 capabilities: Iterable[str] = (), labels: Mapping[str, str] | None = None,
                 capacity: int | None = None) -> None:
    """Refuse (`unauthorized`) a registration or declaration outside the policy."""
    found = violations(policy, services=services, capabilities=capabilities, labels=labels,
                       capacity=capacity)
    if found:
        raise CommandRefused(
            ErrorCode.UNAUTHORIZED,
            f"agent {agent_id} may not claim that: {found[0]['problem']}"
            + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""),
            found[:MAX_DETAILS])
