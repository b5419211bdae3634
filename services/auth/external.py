"""Starting with auth on against a NATS server of the user's: it must know our keys,
and it must not let clients in without credentials."""

from __future__ import annotations

import contextlib
import logging

import nats
import nats.errors

from infra.auth.bundle import SHARED_NAMES, missing_keys
from infra.auth.credentials import Keys
from infra.bus.connection import redact
from infra.bus.nats_internals import auth_required
from infra.startup import CannotStart

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
OPEN = "open"  # a server that asks no client for credentials


async def check_external_server(url: str, keys: Keys) -> None:
    """Refuse to start (CannotStart) when any of the keys every orchestrator of a
    deployment shares is missing (infra.auth.bundle), when the server does not know our
    serving user, or when it asks no client for credentials."""
    missing = missing_keys(keys)
    if len(missing) == len(SHARED_NAMES):
        raise CannotStart(
            f"ORCH_AUTH=on needs the deployment's keys in {keys.directory}: on its first "
            f"orchestrator run `orchestrator auth server-config` to make them and print the "
            f"block for your nats-server configuration; on any other, `orchestrator auth "
            f"import` the bundle `orchestrator auth export` wrote where they are (or set "
            f"ORCH_AUTH=off for development)")
    if missing:
        raise CannotStart(
            f"{keys.directory} lacks {', '.join(missing)} (it has "
            f"{', '.join(name for name in SHARED_NAMES if name not in missing)}): every "
            f"orchestrator of a deployment needs all of {', '.join(SHARED_NAMES)}; run "
            f"`orchestrator auth export FILE` where they are and `orchestrator auth import "
            f"FILE --data-dir {keys.directory.parent}` here")
    admitted = await _admitted(url, keys.serving_seed())
    if admitted is False:
        raise CannotStart(
            f"the NATS server at {redact(url)} does not know the orchestrator's serving "
            f"user (a key derived from {keys.orchestrator}, added when the orchestrator "
            f"began to serve requests through a user of its own): replace the block in "
            f"its configuration with the one `orchestrator auth server-config` prints now, "
            f"and reload it; or, if another orchestrator's keys are the ones it trusts, "
            f"take them with `orchestrator auth export` there and `orchestrator auth "
            f"import --force` here")
    if admitted == OPEN:
        raise CannotStart(
            f"the NATS server at {redact(url)} lets clients in without credentials, so "
            f"anyone could act as any agent: add the block printed by `orchestrator auth "
            f"server-config` to its configuration and restart it (or set ORCH_AUTH=off "
            f"for development)")


async def _admitted(url: str, seed: str) -> bool | str | None:
    """Whether the server lets our serving user in: True; OPEN when it asks no client for
    credentials (its INFO says so: no client without credentials is tried, which the
    server would log as an authentication error at every start); False when it refuses
    the key; None when it could not be asked (unreachable)."""
    errors: list[Exception] = []

    async def quiet(exc: Exception) -> None:
        errors.append(exc)
        log.debug("probe of the NATS server: %r", exc)

    try:
        probe = await nats.connect(url.split(","), allow_reconnect=False,
                                   max_reconnect_attempts=0, error_cb=quiet,
                                   nkeys_seed_str=seed,
                                   connect_timeout=PROBE_TIMEOUT_S)
    except Exception as exc:  # refused, or unreachable: connect() and error_cb say
        refused = any("authorization" in str(e).lower() for e in (*errors, exc))
        log.debug("probe of %s refused: %r", redact(url), exc)
        return False if refused else None
    try:
        return True if auth_required(probe) else OPEN
    finally:
        with contextlib.suppress(nats.errors.Error):
            await probe.close()
