"""How the CLI's read commands reach the read API: its address (flag, then ORCH_HTTP_HOST
and ORCH_HTTP_PORT, then the default) and, with auth on, a bearer token (ORCH_API_TOKEN,
else the local one in `<data dir>/auth/read.token`). The token is sent, never printed."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from infra.auth.credentials import Keys, read_secret
from services.cli.auth import CommandFailed
from services.cli.common.connection import Unreachable, add_log_level_flag

API_TOKEN = "ORCH_API_TOKEN"
INDEX_HEADER = "X-Orch-Index"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", "8080"
REQUEST_TIMEOUT_S = 10.0


def default_api_url(env: os._Environ[str] | dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    host = env.get("ORCH_HTTP_HOST") or DEFAULT_HOST
    if host in ("0.0.0.0", "::"):  # bound everywhere: this machine answers on loopback
        host = DEFAULT_HOST
    port = env.get("ORCH_HTTP_PORT") or DEFAULT_PORT
    scheme = "https" if env.get("ORCH_TLS_CERT") else "http"
    return f"{scheme}://{host}:{port}"


def add_api_flags(parser: argparse.ArgumentParser) -> None:
    add_log_level_flag(parser)
    parser.add_argument("--api-url", default=default_api_url(),
                        help="the read API (default from ORCH_HTTP_HOST and ORCH_HTTP_PORT: "
                             f"http://{DEFAULT_HOST}:{DEFAULT_PORT})")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("ORCH_DATA_DIR", "./.orchestrator")),
                        help="where the local read token is (env ORCH_DATA_DIR; default "
                             "./.orchestrator)")
    parser.add_argument("--json", action="store_true", help="JSON for scripts")


def token_of(args: argparse.Namespace) -> tuple[str | None, str]:
    """(token, where it came from): ORCH_API_TOKEN, else the local read token when there
    is one, else none (an orchestrator with auth off wants none)."""
    if os.environ.get(API_TOKEN):
        return os.environ[API_TOKEN].strip(), API_TOKEN
    local = Keys.of(args.data_dir).read_token
    return (read_secret(local), str(local)) if local.exists() else (None, "")


@dataclass(frozen=True)
class Answer:
    body: Any
    index: int


class ReadApi:
    """GETs against the read API, with every failure as one plain line."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.url = args.api_url.rstrip("/")
        token, self._token_from = token_of(args)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ReadApi:
        self._session = aiohttp.ClientSession(headers=self._headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def get(self, path: str, params: dict[str, Any] | list[tuple[str, str]] | None = None,
                  *, wait: float | None = None, missing_ok: bool = False) -> Answer | None:
        """The body and X-Orch-Index; None for a 404 when `missing_ok`."""
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S + (wait or 0))
        try:
            async with self._session.get(self.url + path, params=params,
                                         timeout=timeout) as response:
                raw = await response.read()
                status = response.status
                index = int(response.headers.get(INDEX_HEADER, "0") or 0)
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise Unreachable(f"cannot reach the read API at {self.url}: is the orchestrator "
                              f"running? is ORCH_HTTP_PORT (--api-url) right?") from exc
        except aiohttp.InvalidURL as exc:
            raise ValueError(f"--api-url {self.url} is not a URL") from exc
        body = _json(raw)
        if status == 200:
            return Answer(body, index)
        if status == 404 and missing_ok:
            return None
        error = body.get("error", {}) if isinstance(body, dict) else {}
        if status == 401 and not self._token_from:
            raise CommandFailed(f"the read API at {self.url} wants a token: set {API_TOKEN} "
                                f"(or --data-dir to where auth/read.token is)")
        if status in (401, 403):
            raise CommandFailed(f"the read API at {self.url} refused the token of "
                                f"{self._token_from}: {error.get('message')}")
        if status >= 500 or not error:
            raise Unreachable(f"the read API at {self.url} answered {status}: "
                              f"{error.get('message') or 'not the orchestrator?'}")
        raise CommandFailed(f"{error.get('code')}: {error.get('message')}")


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
