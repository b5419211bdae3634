"""Who may connect and with what: identities by name and by public key, and API tokens.

Fed only the identity events (a follower of its own, from the log's start), so that a
projection snapshot of agents and tasks never needs to carry it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from projections.log_event import LogEvent
from projections.position import Position


@dataclass(slots=True)
class IdentityView:
    name: str
    roles: frozenset[str]
    public_key: str | None = None
    revoked: bool = False
    api_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    # What it may claim as an agent (domain.identities.policy); None: anything.
    policy: dict[str, Any] | None = None


class Access:
    """The identity projection. `apply` is pure state change; no I/O."""

    def __init__(self) -> None:
        self.identities: dict[str, IdentityView] = {}
        self.by_key: dict[str, str] = {}  # public key -> identity name
        self.position = Position()

    def apply(self, event: LogEvent) -> None:
        if event.kind == "identity":
            self._apply(event)
        self.position.advance(event.position)

    def _apply(self, event: LogEvent) -> None:
        data = event.data()
        name = event.name
        if name == "Created":
            view = IdentityView(event.aggregate_id, frozenset(data["roles"]))
            self.identities[event.aggregate_id] = view
            self._set_key(view, data.get("public_key"))
            return
        if name == "CarriedForward":
            # The identity restated whole: a bounded log may have cut all before it.
            self._restate(event.aggregate_id, data["state"])
            return
        view_or_none = self.identities.get(event.aggregate_id)
        if view_or_none is None:
            return
        view = view_or_none
        if name == "EnrollmentIssued":
            view.roles = frozenset(data["roles"])
            view.policy = data.get("policy")  # absent before policies existed
        elif name == "AgentEnrolled":
            view.revoked = False
            self._set_key(view, data["public_key"])
        elif name == "Revoked":
            view.revoked = True
            view.api_tokens = {}
            self._set_key(view, None)
        elif name == "ApiTokenIssued":
            view.api_tokens[data["token_id"]] = (data["scope"], data["digest"])

    def _restate(self, name: str, state: dict[str, Any]) -> None:
        view = self.identities.get(name)
        if view is None:
            view = self.identities[name] = IdentityView(name, frozenset(state["roles"]))
        view.roles = frozenset(state["roles"])
        view.revoked = state["revoked"]
        view.policy = state.get("policy")
        view.api_tokens = {token_id: (scope, digest)
                           for token_id, (scope, digest) in state["api_tokens"].items()}
        self._set_key(view, state["public_key"])

    def _set_key(self, view: IdentityView, public_key: str | None) -> None:
        if view.public_key is not None and self.by_key.get(view.public_key) == view.name:
            del self.by_key[view.public_key]
        view.public_key = public_key
        if public_key is not None:
            self.by_key[public_key] = view.name

    def is_revoked(self, name: str) -> bool:
        view = self.identities.get(name)
        return view is not None and view.revoked

    def has_role(self, name: str, role: str) -> bool:
        view = self.identities.get(name)
        return view is not None and not view.revoked and role in view.roles

    def policy_of(self, name: str) -> dict[str, Any] | None:
        view = self.identities.get(name)
        return view.policy if view is not None else None

    def by_public_key(self, public_key: str) -> IdentityView | None:
        name = self.by_key.get(public_key)
        view = self.identities.get(name) if name is not None else None
        return view if view is not None and not view.revoked else None

    def token_scope(self, name: str, token_id: str, digest: str) -> str | None:
        """The scope of a live API token of `name` with this digest, else None."""
        view = self.identities.get(name)
        if view is None or view.revoked:
            return None
        found = view.api_tokens.get(token_id)
        if found is None or not hmac.compare_digest(found[1].encode(), digest.encode()):
            return None
        return found[0]
