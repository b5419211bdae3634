"""Agent commands: register, deregister, drain, and the health monitor's decisions."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from domain.agents.agent import Agent
from domain.agents.commands import (
    ControlMessage,
    DeclareServices,
    DeregisterAgent,
    DrainAgent,
    RegisterAgent,
    RegisterReply,
    RemoveAgent,
    UndrainAgent,
)
from domain.errors import CommandRefused, ErrorCode
from infra.caller import current_identity
from infra.log.repository import Repository
from infra.names import Names
from projections.fleet.agents import AgentHealth
from services.execute import Outcome, execute

# Seconds since an agent's given incarnation was last heard from; None if unknown here.
SilenceOf = Callable[[str, int], float | None]
Publish = Callable[[str, bytes], Awaitable[None]]


async def _nowhere(subject: str, data: bytes) -> None:
    """No agent to tell (tests that do not listen)."""


def silence_in(agents: AgentHealth, clock: Callable[[], float] = time.time) -> SilenceOf:
    """The silence of an incarnation as this process's health projection sees it."""

    def silence(agent_id: str, incarnation: int) -> float | None:
        view = agents.get(agent_id)
        if view is None or view.incarnation > incarnation:
            return None
        if view.incarnation < incarnation:
            return 0.0  # registered so lately that our projection has not applied it yet
        return max(0.0, clock() - view.last_heard_at.timestamp())

    return silence


def _existing(agent: Agent | None, agent_id: str) -> Agent:
    if agent is None:
        raise CommandRefused(ErrorCode.NOT_FOUND, f"agent {agent_id} is not registered")
    return agent


class AgentRegistry:
    """Command handlers of the Agent aggregate: thin load-decide-save wrappers."""

    def __init__(self, repository: Repository, names: Names, heartbeat_interval: float,
                 silence_of: SilenceOf = lambda agent_id, incarnation: None,
                 suspect_after: float = 3.0, credentials_ttl_s: float | None = None,
                 known: Callable[[str], bool] = lambda agent_id: False,
                 publish: Publish = _nowhere) -> None:
        self.repository = repository
        # Tells an agent taken out by an operator or a revocation, on its control subject.
        self.publish = publish
        # Whether the agent has registered before, as the projection says: a healthy
        # agent's aggregate is not cached (services.app), and its re-registration then
        # reads it from the log at once rather than after a refused creation.
        self.known = known
        self.credentials_ttl_s = credentials_ttl_s
        self.names = names
        self.heartbeat_interval = heartbeat_interval
        self.silence_of = silence_of
        self.suspect_after = suspect_after

    async def register(self, cmd: RegisterAgent, causation_id: str | None = None) -> dict[str, Any]:
        capabilities = list(cmd.capabilities)
        labels = dict(cmd.labels)
        services = [s.model_dump() for s in cmd.services]
        kinds = list(cmd.kinds)

        def decide(agent: Agent | None) -> Agent:
            if agent is None:
                return Agent(cmd.agent_id, capabilities, cmd.capacity, labels, services, kinds,
                             cmd.instance_id, cmd.progress_every_s)
            if not cmd.replace:
                agent.check_not_held_by_a_live_incarnation(
                    self.silence_of(agent.id, agent.incarnation), self.suspect_after,
                    cmd.instance_id)
            agent.reregister(capabilities, cmd.capacity, labels, services, kinds,
                             cmd.instance_id, cmd.progress_every_s)
            return agent

        fresh = self.known(cmd.agent_id) and not self.repository.cached(cmd.agent_id)
        outcome = await execute(self.repository, cmd.agent_id, decide, causation_id, causation_id,
                                fresh)
        return RegisterReply(
            ok=True,
            agent_id=cmd.agent_id,
            incarnation=outcome.aggregate.incarnation,
            heartbeat_subject=self.names.heartbeat(cmd.agent_id),
            heartbeat_interval_s=self.heartbeat_interval,
            tasks_subject=self.names.agent_tasks(cmd.agent_id),
            control_subject=self.names.agent_control(cmd.agent_id),
            position=outcome.position or 0,
            credentials_ttl_s=self.credentials_ttl_s,
        ).model_dump()

    async def deregister(
        self, cmd: DeregisterAgent, causation_id: str | None = None
    ) -> dict[str, Any]:
        def decide(agent: Agent | None) -> Agent:
            agent = _existing(agent, cmd.agent_id)
            agent.deregister(cmd.incarnation)
            return agent

        outcome = await execute(
            self.repository, cmd.agent_id, decide, causation_id, causation_id)
        return _reply(outcome, status=outcome.aggregate.status)

    async def remove(self, cmd: RemoveAgent, causation_id: str | None = None) -> dict[str, Any]:
        """An operator's deregistration of the current incarnation: its work moves."""
        def decide(agent: Agent | None) -> Agent:
            agent = _existing(agent, cmd.agent_id)
            agent.deregister(agent.incarnation, reason=f"removed by {current_identity.get()}")
            return agent

        outcome = await execute(
            self.repository, cmd.agent_id, decide, causation_id, causation_id)
        if outcome.position is not None:
            await self._tell_deregistered(outcome.aggregate, f"removed by {current_identity.get()}")
        return _reply(outcome, status=outcome.aggregate.status)

    async def _tell_deregistered(self, agent: Agent, reason: str) -> None:
        """The process is told at once (its next heartbeat would tell it too: a core NATS
        message to an agent that is reconnecting is lost)."""
        message = ControlMessage(type="deregistered", reason=reason,
                                 incarnation=agent.incarnation)
        await self.publish(self.names.agent_control(agent.id),
                           message.model_dump_json().encode())

    async def remove_revoked(self, agent_id: str, causation_id: str | None) -> int | None:
        """The revoked identity's agent, if registered and not gone, deregistered as an
        operator's remove does (its work moves); the position, or None if nothing to do."""
        def decide(agent: Agent | None) -> Agent | None:
            if agent is None or agent.left:
                return None
            agent.deregister(agent.incarnation, reason="revoked")
            return agent

        outcome = await execute(
            self.repository, agent_id, decide, causation_id, causation_id)
        if outcome.position is not None:
            await self._tell_deregistered(outcome.aggregate, "revoked")
        return outcome.position

    async def drain(self, cmd: DrainAgent, causation_id: str | None = None) -> dict[str, Any]:
        def decide(agent: Agent | None) -> Agent:
            agent = _existing(agent, cmd.agent_id)
            agent.drain()
            return agent

        outcome = await execute(
            self.repository, cmd.agent_id, decide, causation_id, causation_id)
        return _reply(outcome, status=outcome.aggregate.status)

    async def undrain(self, cmd: UndrainAgent, causation_id: str | None = None) -> dict[str, Any]:
        def decide(agent: Agent | None) -> Agent:
            agent = _existing(agent, cmd.agent_id)
            agent.undrain()
            return agent

        outcome = await execute(
            self.repository, cmd.agent_id, decide, causation_id, causation_id)
        return _reply(outcome, status=outcome.aggregate.status)

    async def declare_services(
        self, cmd: DeclareServices, causation_id: str | None = None
    ) -> dict[str, Any]:
        services = [s.model_dump() for s in cmd.services]

        def decide(agent: Agent | None) -> Agent:
            agent = _existing(agent, cmd.agent_id)
            agent.change_services(services)
            return agent

        outcome = await execute(
            self.repository, cmd.agent_id, decide, causation_id, causation_id)
        return _reply(outcome, status=outcome.aggregate.status)

    # --- decisions of the health monitor, through the same path ---------------------

    async def deregister_dead(
        self, agent_id: str, incarnation: int, dead_for_s: float, causation_id: str,
        correlation_id: str,
    ) -> Outcome:
        def decide(agent: Agent | None) -> Agent:
            agent = _existing(agent, agent_id)
            agent.check_is_dead()
            agent.deregister(incarnation, reason=f"dead for {dead_for_s}s")
            return agent

        return await execute(self.repository, agent_id, decide, causation_id, correlation_id)

    async def suspect(
        self, agent_id: str, incarnation: int, silence_s: float, suspect_after_s: float,
        last_heartbeat_seq: int, causation_id: str, correlation_id: str,
    ) -> Outcome:
        def decide(agent: Agent | None) -> Agent:
            agent = _existing(agent, agent_id)
            agent.suspect(incarnation, silence_s, suspect_after_s, last_heartbeat_seq)
            return agent

        return await execute(self.repository, agent_id, decide, causation_id, correlation_id)

    async def declare_dead(
        self, agent_id: str, incarnation: int, silence_s: float, dead_after_s: float,
        last_heartbeat_seq: int, causation_id: str, correlation_id: str,
    ) -> Outcome:
        def decide(agent: Agent | None) -> Agent:
            agent = _existing(agent, agent_id)
            agent.declare_dead(incarnation, silence_s, dead_after_s, last_heartbeat_seq)
            return agent

        return await execute(self.repository, agent_id, decide, causation_id, correlation_id)

    async def recover(
        self, agent_id: str, incarnation: int, last_heartbeat_seq: int,
        causation_id: str, correlation_id: str,
    ) -> Outcome:
        def decide(agent: Agent | None) -> Agent:
            agent = _existing(agent, agent_id)
            agent.recover(incarnation, last_heartbeat_seq)
            return agent

        return await execute(self.repository, agent_id, decide, causation_id, correlation_id)


    async def mark_unresponsive(self, agent_id: str, incarnation: int, reason: str,
                                tasks: list[str], streak: int, hold_s: float, until: float,
                                causation_id: str) -> Outcome:
        def decide(agent: Agent | None) -> Agent:
            agent = _existing(agent, agent_id)
            agent.mark_unresponsive(incarnation, reason, tasks, streak, hold_s, until)
            return agent

        return await execute(self.repository, agent_id, decide, causation_id)

    async def readmit(self, agent_id: str, incarnation: int, until: float,
                      causation_id: str) -> Outcome:
        def decide(agent: Agent | None) -> Agent:
            agent = _existing(agent, agent_id)
            agent.readmit(incarnation, until)
            return agent

        return await execute(self.repository, agent_id, decide, causation_id)


def _reply(outcome: Outcome, **fields: Any) -> dict[str, Any]:
    reply: dict[str, Any] = {"ok": True, "agent_id": outcome.aggregate.id, **fields}
    if outcome.position is not None:
        reply["position"] = outcome.position
    return reply
