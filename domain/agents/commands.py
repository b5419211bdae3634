"""Commands agents send about themselves, and the messages they exchange with us."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from domain.fields import (
    STRICT,
    Capability,
    Identifier,
    Incarnation,
    Kind,
    LabelKey,
    LabelValue,
    Tag,
)


class ServiceDeclaration(BaseModel):
    """One instance of a service an agent offers."""

    model_config = STRICT

    name: Identifier
    address: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    port: Annotated[int, Field(ge=0, le=65535)]
    tags: Annotated[list[Tag], Field(max_length=32)] = []
    meta: Annotated[dict[LabelKey, LabelValue], Field(max_length=32)] = {}


class RegisterAgent(BaseModel):
    """Register an agent, or re-register it with a new incarnation."""

    model_config = STRICT

    agent_id: Identifier
    capabilities: Annotated[list[Capability], Field(max_length=64)] = []
    capacity: Annotated[int, Field(ge=0, le=100_000)] = 1
    labels: Annotated[dict[LabelKey, LabelValue], Field(max_length=64)] = {}
    services: Annotated[list[ServiceDeclaration], Field(max_length=32)] = []
    # The task kinds it runs; empty: any kind.
    kinds: Annotated[list[Kind], Field(max_length=64)] = []
    # Take the id over from an incarnation that is still heard from.
    replace: bool = False
    # Random per process start: the same process registering again (a retry whose reply
    # was lost, or on request) is not another process claiming a live id.
    instance_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    # Its promise to report progress on a running task at least this often (seconds): a
    # run that goes quiet for longer is taken for stuck (services/leader/unresponsive.py).
    progress_every_s: Annotated[float, Field(gt=0, le=3600)] | None = None


class DeregisterAgent(BaseModel):
    """The agent leaves for good; its open work moves at once."""

    model_config = STRICT

    agent_id: Identifier
    incarnation: Incarnation


class DrainAgent(BaseModel):
    """No new work for the agent; what it runs finishes."""

    model_config = STRICT

    agent_id: Identifier


class UndrainAgent(BaseModel):
    """The agent takes new work again: the end of a drain."""

    model_config = STRICT

    agent_id: Identifier


class DeclareServices(BaseModel):
    """Replace the set of services an agent offers, without registering again."""

    model_config = STRICT

    agent_id: Identifier
    services: Annotated[list[ServiceDeclaration], Field(max_length=32)]


class CatalogQuery(BaseModel):
    """Find service instances; every given filter must match."""

    model_config = STRICT

    service: Identifier | None = None
    tags: Annotated[list[Tag], Field(max_length=32)] = []
    labels: Annotated[dict[LabelKey, LabelValue], Field(max_length=64)] = {}
    healthy_only: bool = True


class Heartbeat(BaseModel):
    """Published by an agent on its heartbeat subject every heartbeat interval."""

    model_config = STRICT

    incarnation: Incarnation
    seq: Annotated[int, Field(ge=0)]
    load: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    # A factory, not `= []`: pydantic deep-copies a list default into every heartbeat
    # that leaves `running` out (half the cost of validating one). The schema still
    # says the default.
    running: Annotated[list[Identifier], Field(default_factory=list, max_length=1_000,
                                               json_schema_extra={"default": []})]
    # The log position of the registration that gave this incarnation (the `position` of
    # its register reply): an orchestrator whose projections are not there yet does not
    # take the agent for unknown. Absent from agents before it.
    registered_at: Annotated[int, Field(ge=1)] | None = None


class RegisterReply(BaseModel):
    """What an agent learns when it registers."""

    model_config = STRICT

    ok: Literal[True]
    agent_id: Identifier
    incarnation: Incarnation
    heartbeat_subject: str
    heartbeat_interval_s: float
    tasks_subject: str
    control_subject: str
    position: int
    # How long a connection's credentials last (auth on): renew by reconnecting before.
    credentials_ttl_s: float | None = None


class ControlMessage(BaseModel):
    """Sent by the orchestrator on an agent's control subject."""

    model_config = STRICT

    type: Literal["reregister", "cancel", "revoke", "deregistered"]
    reason: str
    incarnation: int | None = None
    task_id: Identifier | None = None
    # For a revoke of an assignment that moved: its token, so that an agent given the
    # task again (a newer token) keeps working on it.
    token: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = Field(
        default=None, exclude_if=lambda token: token is None)  # absent from the others


class RemoveAgent(BaseModel):
    """An operator takes an agent out, as if it had deregistered."""

    model_config = STRICT

    agent_id: Identifier
