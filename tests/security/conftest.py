"""An orchestrator with ORCH_AUTH=on on an embedded nats-server of its own, and clients
holding each role's real credentials: how an attacker or a user would meet it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from nats.aio.client import Client

from infra.auth.credentials import read_secret
from infra.auth.keys import Role, new_seed, public_key
from infra.bus.embedded import free_port
from infra.names import Names
from infra.settings import Settings
from services.app import Orchestrator
from tests.support import eventually

JWT_TTL_S = 3.0  # credentials renewed every ~2 s: revocation within 3 s


@dataclass
class Connected:
    """A client connection as one identity, with the errors the server sent it."""

    nc: Client
    identity: str
    errors: list[str] = field(default_factory=list)

    async def close(self) -> None:
        if not self.nc.is_closed:
            await self.nc.close()


@dataclass
class Secure:
    orch: Orchestrator
    names: Names
    operator_seed: str
    opened: list[Connected] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.orch.nats_url

    async def connect(self, identity: str, seed: str | None, token: str | None = None,
                      inbox: str | None = None) -> Connected:
        """Connect as `identity`, or raise what the server answered."""
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        nc = await nats.connect(
            self.url, name=identity, nkeys_seed_str=seed, token=token,
            inbox_prefix=inbox or self.names.inbox_prefix(identity),
            allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5,
            error_cb=on_error)
        connected = Connected(nc, identity, errors)
        self.opened.append(connected)
        return connected

    async def operator(self) -> Connected:
        return await self.connect("operator", self.operator_seed)

    async def admin(self, command: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send an operator command as the local operator; the reply."""
        op = await self.operator()
        try:
            msg = await op.nc.request(self.names.client_command(command, "operator"),
                                      orjson.dumps(body), timeout=10)
        finally:
            await op.close()
        reply: dict[str, Any] = orjson.loads(msg.data)
        return reply

    async def enroll(self, agent_id: str, **extra: Any) -> str:
        reply = await self.admin("admin.enroll", {"agent_id": agent_id, **extra})
        assert reply["ok"], reply
        token: str = reply["token"]
        return token

    async def identity(self, name: str, roles: list[str]) -> str:
        """A person's or tool's identity with these roles; its seed."""
        seed = new_seed(Role.USER)
        reply = await self.admin("admin.identity.create",
                                 {"name": name, "roles": roles, "public_key": public_key(seed)})
        assert reply["ok"], reply
        return seed

    async def enrolled_agent(self, agent_id: str, roles: list[str] | None = None) -> str:
        """An agent enrolled with its own key (first connection made and closed); its seed."""
        seed = new_seed(Role.USER)
        token = await self.enroll(agent_id, roles=roles or [])
        first = await self.connect(agent_id, seed, token)
        await first.close()
        return seed


@pytest.fixture
async def secure(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Secure]:
    # A test may loosen these with @pytest.mark.orch_settings(name=value, ...).
    marker = request.node.get_closest_marker("orch_settings")
    overrides: dict[str, Any] = marker.kwargs if marker else {}
    settings = Settings(**{
        "data_dir": tmp_path / "data", "embedded_nats_port": free_port(), "http_port": 0,
        "subject_prefix": "orch", "heartbeat_interval": 0.1, "suspect_after": 0.5,
        "dead_after": 1.0, "accept_timeout": 2.0, "lease_ttl": 1.0, "retry_backoff": 0.2,
        "retry_backoff_max": 2.0, "nats_sync": "default", "auth": "on",
        "auth_jwt_ttl": JWT_TTL_S, **overrides,
    })
    orch = Orchestrator(settings)
    await orch.start()
    await eventually(lambda: orch.is_leader, what="leader lease acquired")
    world = Secure(orch, orch.names, read_secret(orch.access_control.keys.operator))
    yield world
    for connected in world.opened:
        await connected.close()
    await orch.stop()


Probe = Callable[[], Awaitable[Any]]
