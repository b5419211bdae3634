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
    """Refuse to start (CannotStart) when the keys are missing, when a client with no
    credentials at all is let in, or when the server does not know our serving user."""
    if not (keys.issuer.exists() and keys.orchestrator.exists()):
        raise CannotStart(
            f"ORCH_AUTH=on needs the deployment's keys in {keys.directory}: run "
            f"`orchestrator auth server-config` to make them and print the block to add to "
            f"your nats-server configuration (or set ORCH_AUTH=off for development)")
    if await _admits(url, None):
        raise CannotStart(
            f"the NATS server at {redact(url)} lets clients in without credentials, so "
            f"anyone could act as any agent: add the block printed by `orchestrator auth "
            f"server-config` to its configuration and restart it (or set ORCH_AUTH=off "
            f"for development)")
    if await _admits(url, keys.serving_seed()) is False:
        raise CannotStart(
            f"the NATS server at {redact(url)} does not know the orchestrator's serving "
            f"user (a key derived from {keys.orchestrator}, added when the orchestrator "
            f"began to serve requests through a user of its own): replace the block in "
            f"its configuration with the one `orchestrator auth server-config` prints now, "
            f"and reload it")


async def _admits(url: str, seed: str | None) -> bool | None:
    """Whether the server lets this key (None: no credentials) in: True, False when it
    refuses the credentials, None when it could not be asked (unreachable)."""
    errors: list[Exception] = []

    async def quiet(exc: Exception) -> None:
        errors.append(exc)
        log.debug("probe of the NATS server: %r", exc)

    try:
        probe = await nats.connect(url.split(","), allow_reconnect=False,
                                   max_reconnect_attempts=0, error_cb=quiet,
                                   nkeys_seed_str=seed,
                                   connect_timeout=ANONYMOUS_PROBE_TIMEOUT_S)
    except Exception as exc:  # refused, or unreachable: connect() and error_cb say
        refused = any("authorization" in str(e).lower() for e in (*errors, exc))
        log.debug("probe of %s refused: %r", redact(url), exc)
        return False if refused else None
    with contextlib.suppress(nats.errors.Error):
        await probe.close()
    return True
