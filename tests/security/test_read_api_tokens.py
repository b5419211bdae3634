"""Bearer tokens on the read API: 401 without one, 403 for a scope that does not reach
the route, the open health checks, and the local read token written on first start."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from infra.auth.credentials import read_secret
from tests.security.conftest import Secure


async def get(secure: Secure, path: str, token: str | None = None,
              scheme: str = "Bearer") -> tuple[int, dict[str, str], dict]:
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    url = f"http://127.0.0.1:{secure.orch.http_port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as reply:
        raw = await reply.read()
        body = orjson.loads(raw) if reply.content_type == "application/json" else {}
        return reply.status, dict(reply.headers), body


async def token(secure: Secure, scope: str, name: str = "dash") -> str:
    reply = await secure.admin("admin.token.create", {"name": name, "scope": scope})
    assert reply["ok"], reply
    value: str = reply["token"]
    return value


class TestBearerTokens:
    @pytest.mark.parametrize("path", ["/v1/agents", "/v1/tasks", "/v1/stats", "/metrics",
                                      "/openapi.json", "/v1/events", "/v1/nothing-here"])
    async def test_every_route_but_the_health_checks_needs_a_token(self, secure, path):
        status, headers, body = await get(secure, path)
        assert status == 401
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert body["error"]["code"] == "unauthorized"

    @pytest.mark.parametrize("path", ["/healthz", "/readyz"])
    async def test_the_health_checks_stay_open(self, secure, path):
        assert (await get(secure, path))[0] == 200

    async def test_a_read_token_reads_and_does_not_reach_the_raw_log(self, secure):
        read = await token(secure, "read")
        assert (await get(secure, "/v1/agents", read))[0] == 200
        for path in ("/v1/events", "/v1/what-if"):
            status, _, body = await get(secure, path, read)
            assert status == 403 and "admin" in body["error"]["message"], path

    async def test_an_admin_token_reaches_everything(self, secure):
        admin = await token(secure, "admin", name="auditor")
        for path in ("/v1/agents", "/v1/events", "/metrics", "/v1/what-if"):
            assert (await get(secure, path, admin))[0] == 200, path

    @pytest.mark.parametrize("forged", [
        "garbage", "ot1.dash.deadbeef.secret", "ot1.nobody.aa.bb", "ot1..x.y", "",
    ])
    async def test_forged_tokens_and_other_schemes_are_refused(self, secure, forged):
        real = await token(secure, "read")
        identity, token_id, _ = real.split(".")[1:]
        assert (await get(secure, "/v1/agents", forged))[0] == 401
        tampered = f"ot1.{identity}.{token_id}.not-the-secret"
        assert (await get(secure, "/v1/agents", tampered))[0] == 401
        assert (await get(secure, "/v1/agents", real, scheme="Basic"))[0] == 401

    async def test_a_revoked_identity_loses_its_tokens(self, secure):
        read = await token(secure, "read")
        assert (await secure.admin("admin.revoke", {"name": "dash"}))["ok"]
        assert (await get(secure, "/v1/agents", read))[0] == 401

    async def test_the_first_start_leaves_a_working_read_token_for_this_machine(self, secure):
        keys = secure.orch.access_control.keys
        assert keys.read_token.stat().st_mode & 0o777 == 0o600
        assert keys.operator.stat().st_mode & 0o777 == 0o600
        assert keys.issuer.stat().st_mode & 0o777 == 0o600
        assert (await get(secure, "/v1/agents", read_secret(keys.read_token)))[0] == 200
