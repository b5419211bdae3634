"""An agent started without its enrollment token is refused at every attempt: it waits
longer after each (it tried four times a second, for ever) and says, once, what to do."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from infra.auth.keys import Role, new_seed
from sdk.agent import AgentClient
from tests.security.conftest import Secure
from tests.support import eventually


async def test_an_unenrolled_agent_backs_off_and_says_how_to_enroll(
        secure: Secure, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sdk.agent")

    def refused() -> float:
        return secure.orch.metrics.registry.get_sample_value(
            "orch_auth_connections_total", {"outcome": "refused"}) or 0.0

    agent = AgentClient("stray", nats_url=secure.url, prefix=secure.names.prefix,
                        nkey_seed=new_seed(Role.USER))
    starting = asyncio.create_task(agent.start())
    try:
        # Its wait doubles at each refusal: 0.5, 1, 2, 4 s after the fourth. A fixed wait
        # (it was 0.25 s) never gets there, and would have tried some fifteen times
        # meanwhile; the server saw each attempt it made, and no more.
        await eventually(lambda: agent._refused_wait_s >= 4.0, timeout=30,
                         what="the wait doubled three times")
        assert 4 <= refused() <= 5
        assert not starting.done()
    finally:
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        await agent.stop(deregister=False)
    hints = [r.getMessage() for r in caplog.records if "not let in" in r.getMessage()]
    assert hints == ["not let in agent=stray: its key is not enrolled, or was revoked; run "
                     "`orchestrator enroll stray` and give the agent its token "
                     "(ORCH_ENROLLMENT_TOKEN)"]
