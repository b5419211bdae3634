"""How the CLI's client commands reach the orchestrator: the same settings as `up` (flag,
then ORCH_* variable, then default), and the identity whose credentials they use.

The credentials are an nkey seed file; by default the local operator's, which the
orchestrator writes into its data directory on first start, so that the CLI on that
machine needs no extra step. The identity is the file's name (`operator.nk` is
`operator`) unless ORCH_IDENTITY says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from infra import settings
from infra.auth.credentials import Keys, read_secret
from infra.bus.connection import redact
from infra.bus.headers import connect as nats_connect
from infra.bus.tls import client_context
from infra.names import Names

log = logging.getLogger(__name__)

CREDENTIALS = "ORCH_CREDENTIALS"
IDENTITY = "ORCH_IDENTITY"
DEFAULT_PORT = 4222
CONNECT_TIMEOUT_S = 5.0


class Unreachable(Exception):
    """The CLI could not connect: unreachable, or not let in."""


def add_log_level_flag(parser: argparse.ArgumentParser, default: str = "WARNING") -> None:
    parser.add_argument("--log-level", default=default,
                        help=f"log level (default {default}); DEBUG also shows a failure's "
                             "traceback")


def default_nats_url() -> str:
    """The embedded server of an orchestrator on this machine: `up` without a NATS URL
    serves on ORCH_EMBEDDED_NATS_PORT, so a client in the same shell finds it there."""
    port = os.environ.get(settings.EMBEDDED_NATS_PORT) or DEFAULT_PORT
    return f"nats://127.0.0.1:{port}"


def add_client_flags(parser: argparse.ArgumentParser, log_level: str = "WARNING") -> None:
    env = os.environ
    add_log_level_flag(parser, log_level)
    parser.add_argument("--nats-url", default=env.get("ORCH_NATS_URL") or default_nats_url(),
                        help="NATS server URL (env ORCH_NATS_URL; default nats://127.0.0.1:"
                             f"<ORCH_EMBEDDED_NATS_PORT, default {DEFAULT_PORT}>, the "
                             "embedded server of an orchestrator on this machine)")
    parser.add_argument("--subject-prefix", default=env.get("ORCH_SUBJECT_PREFIX", "orch"),
                        help="the orchestrator's prefix (env ORCH_SUBJECT_PREFIX; default orch)")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(env.get("ORCH_DATA_DIR", "./.orchestrator")),
                        help="where the local credentials are (env ORCH_DATA_DIR; default "
                             "./.orchestrator)")
    parser.add_argument("--nats-tls-ca", type=Path, default=env.get("ORCH_NATS_TLS_CA"),
                        help="CA file to verify a TLS NATS with (env ORCH_NATS_TLS_CA)")
    parser.add_argument("--credentials", type=Path, default=env.get(CREDENTIALS),
                        help=f"nkey seed file to connect with (env {CREDENTIALS}; default "
                             "<data dir>/auth/operator.nk when it exists)")


class Denied(Exception):
    """NATS refused to let this identity publish the command: its roles do not allow it."""


@dataclass(frozen=True)
class Connected:
    nc: Client
    identity: str
    names: Names
    # Subjects NATS refused this connection (lowercase, as nats-py reports them), each
    # with the futures of the requests waiting on it.
    denied: dict[str, list[asyncio.Future[None]]] = field(default_factory=dict)

    async def request(self, command: str, body: bytes, timeout: float) -> Msg:
        """The identity's command, answered; Denied at once when NATS refuses to carry it
        (a permissions violation comes back at once, where the answer never would)."""
        subject = self.names.client_command(command, self.identity)
        refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.denied.setdefault(subject.lower(), []).append(refused)
        answered = asyncio.ensure_future(self.nc.request(subject, body, timeout=timeout))
        either: set[asyncio.Future[Any]] = {answered, refused}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.denied[subject.lower()].remove(refused)
        if answered.done():
            refused.cancel()
            return answered.result()
        answered.cancel()
        raise Denied(f"{self.identity} may not send {command}: NATS refused it (the "
                     f"identity's roles do not allow it)")

    def violation(self, exc: Exception) -> None:
        """An error from the server: a refused publish settles the requests it stopped."""
        text = str(exc).lower()
        marker = "permissions violation for publish to "
        if marker not in text:
            return
        subject = text.split(marker, 1)[1].strip().strip('"\'')
        for refused in self.denied.get(subject, []):
            if not refused.done():
                refused.set_result(None)


def credentials_file(args: argparse.Namespace) -> Path | None:
    """The seed file the command uses: --credentials (ORCH_CREDENTIALS), else the local
    operator's in --data-dir when it is there, else none."""
    path: Path | None = args.credentials
    if path is None:
        local = Keys.of(args.data_dir).operator
        path = local if local.exists() else None
    return path


def credentials_of(args: argparse.Namespace) -> tuple[str, str | None]:
    """(identity, seed) the command connects as; no seed when there are no credentials
    (an orchestrator with ORCH_AUTH=off)."""
    path = credentials_file(args)
    identity = os.environ.get(IDENTITY) or (path.stem if path is not None else "anonymous")
    return identity, read_secret(path) if path is not None else None


def _refused(identity: str, args: argparse.Namespace) -> str:
    if credentials_file(args) is not None:
        return f"credentials of {identity!r} refused"
    return (f"credentials of {identity!r} refused: none were given and there is no "
            f"{Keys.of(args.data_dir).operator}; set ORCH_CREDENTIALS (--credentials) to "
            "a seed file, or ORCH_DATA_DIR (--data-dir) to the orchestrator's data directory")


async def connect_client(args: argparse.Namespace) -> Connected:
    identity, seed = credentials_of(args)

    made: list[Connected] = []

    async def quiet(exc: Exception) -> None:
        log.debug("nats: %r", exc)  # one plain line is said instead, below
        if made:
            made[0].violation(exc)

    try:
        nc = await nats_connect(
            servers=args.nats_url.split(","), name=identity, nkeys_seed_str=seed,
            inbox_prefix=Names(args.subject_prefix).inbox_prefix(identity),
            # Each server is tried twice, then given up: nats-py reads 0 attempts as no
            # limit, and would try an unreachable server for ever.
            allow_reconnect=False, max_reconnect_attempts=1, reconnect_time_wait=0.2,
            error_cb=quiet,
            connect_timeout=CONNECT_TIMEOUT_S, tls=client_context(args.nats_tls_ca))
    except Exception as exc:
        text = str(exc) or type(exc).__name__
        hint = (_refused(identity, args) if "uthorization" in text
                else "is it running? is ORCH_NATS_URL (--nats-url) right?")
        raise Unreachable(f"cannot connect to NATS at {redact(args.nats_url)}: {hint}") \
            from None
    made.append(Connected(nc, identity, Names(args.subject_prefix)))
    return made[0]


# How long a write command waits for its answer.
COMMAND_TIMEOUT_S = 10.0


async def send_command(args: argparse.Namespace, command: str,
                       body: dict[str, Any]) -> dict[str, Any]:
    """One command as the CLI's identity, on a connection of its own: its reply."""
    connected = await connect_client(args)
    try:
        msg = await connected.request(command, orjson.dumps(body), timeout=COMMAND_TIMEOUT_S)
    finally:
        await connected.nc.close()
    reply: dict[str, Any] = orjson.loads(msg.data)
    return reply
