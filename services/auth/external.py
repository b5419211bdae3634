"""Starting with auth on against a NATS server of the user's: it must know our keys,
and it must not let clients in without credentials."""

from __future__ import annotations

import contextlib
import logging

import nats
import nats.errors

from infra.auth.credentials import Keys
from infra.bus.connection import redact
from infra.startup import CannotStart

log = logging.getLogger(__name__)

ANONYMOUS_PROBE_TIMEOUT_S = 3.0


async def check_external_server(url: str, keys: Keys) -> None:
    """Refuse to start (CannotStart) when the keys are missing, or when a client with
    no credentials at all is let in."""
    if not (keys.issuer.exists() and keys.orchestrator.exists()):
        raise CannotStart(
            f"ORCH_AUTH=on needs the deployment's keys in {keys.directory}: run "
            f"`orchestrator auth server-config` to make them and print the block to add to "
            f"your nats-server configuration (or set ORCH_AUTH=off for development)")
    async def quiet(exc: Exception) -> None:
        log.debug("anonymous probe: %r", exc)

    try:
        probe = await nats.connect(url.split(","), allow_reconnect=False,
                                   max_reconnect_attempts=0, error_cb=quiet,
                                   connect_timeout=ANONYMOUS_PROBE_TIMEOUT_S)
    except Exception as exc:  # refused (as it should be), or unreachable: connect() says
        log.debug("anonymous probe of %s refused: %r", redact(url), exc)
        return
    with contextlib.suppress(nats.errors.Error):
        await probe.close()
    raise CannotStart(
        f"the NATS server at {redact(url)} lets clients in without credentials, so anyone "
        f"could act as any agent: add the block printed by `orchestrator auth "
        f"server-config` to its configuration and restart it (or set ORCH_AUTH=off for "
        f"development)")
