"""The dashboard's actions over HTTP with auth on: drain, undrain and cancel need an admin
token (a read token is told so, 403, and writes nothing); an admin token's action runs
the NATS command's own handler and records the token's identity; bad input is a coded
error that writes nothing."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from tests.security.conftest import Secure
from tests.security.test_read_api_tokens import token


async def post(secure: Secure, path: str, bearer: str, body: bytes = b"",
               content_type: str = "application/json") -> tuple[int, Any]:
    url = f"http://127.0.0.1:{secure.orch.http_port}{path}"
    headers = {"Authorization": f"Bearer {bearer}", "Content-Type": content_type}
    async with aiohttp.ClientSession() as session, session.post(
            url, data=body, headers=headers) as reply:
        return reply.status, orjson.loads(await reply.read())


async def test_actions_need_an_admin_token_and_record_who_acted(secure: Secure) -> None:
    submitted = await secure.admin("task.submit", {"task_id": "t1", "kind": "nobody-runs"})
    assert submitted["ok"], submitted
    read = await token(secure, "read")
    admin = await token(secure, "admin", name="ops-alice")
    store = secure.orch.store
    before = await store.last_position()

    for path in ("/v1/agents/a1/drain", "/v1/agents/a1/undrain", "/v1/tasks/t1/cancel"):
        status, body = await post(secure, path, read)
        assert status == 403, (path, body)
        assert body["error"]["code"] == "unauthorized"
        assert "needs an admin token" in body["error"]["message"], body
    for path, raw, code, status in [
            ("/v1/tasks/t1/cancel", b'{"reason": 5}', "invalid_request", 400),
            ("/v1/tasks/t1/cancel", b'{"task_id": "t2"}', "invalid_request", 400),
            ("/v1/tasks/t1/cancel", b"not json", "invalid_request", 400),
            ("/v1/tasks/t1/cancel", b"[1]", "invalid_request", 400),
            ("/v1/tasks/no%20such/cancel", b"", "invalid_request", 400),
            ("/v1/tasks/ghost/cancel", b"", "not_found", 404),
            ("/v1/agents/ghost/drain", b"", "not_found", 404),
            ("/v1/agents/ghost/undrain", b"", "not_found", 404)]:
        got, body = await post(secure, path, admin, raw)
        assert (got, body["error"]["code"]) == (status, code), (path, raw, body)
    # Not JSON by its type (what a form on another site could send without asking).
    got, body = await post(secure, "/v1/tasks/t1/cancel", admin, b"", "text/plain")
    assert (got, body["error"]["code"]) == (400, "invalid_request"), body
    assert await store.last_position() == before  # nothing written

    status, body = await post(secure, "/v1/tasks/t1/cancel", admin, b'{"reason": "not needed"}')
    assert status == 200 and body["ok"] and body["status"] == "cancelled", body
    cancelled = (await store.history("task", "t1"))[-1]
    assert cancelled.name == "Cancelled" and cancelled.identity == "ops-alice"
    assert cancelled.data()["reason"] == "not needed"
