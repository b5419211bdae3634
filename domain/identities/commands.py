"""Commands of operators about identities: enrollment, revocation, keys and API tokens."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from domain.fields import STRICT, Capability, Identifier, LabelKey, LabelValue

Role = Literal["agent", "submitter", "operator", "reader", "auditor"]
# A public user nkey: "U" and 55 more base32 characters.
PublicUserKey = Annotated[str, StringConstraints(pattern=r"^U[A-Z2-7]{55}$")]
Reason = Annotated[str, StringConstraints(max_length=256)]

MAX_ENROLLMENT_TTL_S = 7 * 24 * 3600


class ClaimPolicy(BaseModel):
    """What the agent may claim when it registers or declares services (domain.identities.policy);
    a part left out (null) does not bound that claim."""

    model_config = STRICT

    services: Annotated[list[Identifier], Field(max_length=64)] | None = None
    capabilities: Annotated[list[Capability], Field(max_length=64)] | None = None
    # Per label key, the values it may take; a key not listed may not be claimed.
    labels: Annotated[dict[LabelKey, Annotated[list[LabelValue], Field(max_length=64)]],
                      Field(max_length=64)] | None = None
    max_capacity: Annotated[int, Field(ge=0, le=100_000)] | None = None


class EnrollAgent(BaseModel):
    """A one-time enrollment token for an agent id (the agent brings its own key)."""

    model_config = STRICT

    agent_id: Identifier
    ttl_s: Annotated[float, Field(gt=0, le=MAX_ENROLLMENT_TTL_S)] = 3600.0
    # Roles besides agent, e.g. submitter for an agent that submits tasks too.
    roles: Annotated[list[Role], Field(max_length=5)] = []
    # Replace the key of an agent enrolled already.
    rotate: bool = False
    # Bounds on its claims; none: it may claim anything, as before policies existed.
    policy: ClaimPolicy | None = None


class CreateIdentity(BaseModel):
    """An identity for a person or a tool, with the public key of the seed it keeps."""

    model_config = STRICT

    name: Identifier
    roles: Annotated[list[Role], Field(min_length=1, max_length=5)]
    public_key: PublicUserKey


class RevokeIdentity(BaseModel):
    """No new connection for it; its JWT runs out within the JWT lifetime."""

    model_config = STRICT

    name: Identifier
    reason: Reason = "revoked by an operator"


class CreateApiToken(BaseModel):
    """A bearer token of the read API for an identity (made if it does not exist)."""

    model_config = STRICT

    name: Identifier
    scope: Literal["read", "admin"]
