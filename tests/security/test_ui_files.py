"""The dashboard's static files under /ui/ are served without a token (they hold no
data), while every /v1 route the page reads from still wants one."""

from __future__ import annotations

import aiohttp
import pytest
from yarl import URL

from services.auth.http import required_scope
from tests.security.test_read_api_tokens import get


@pytest.mark.parametrize("path", ["/ui", "/ui/", "/ui/index.html", "/ui/app.js",
                                  "/ui/views/agents.js", "/ui/style.css"])
def test_the_dashboard_files_need_no_scope(path):
    assert required_scope(path) is None


@pytest.mark.parametrize("path", ["/uix", "/ui-data", "/v1/ui/", "/v1/agents"])
def test_other_paths_still_need_one(path):
    assert required_scope(path) == "read"


class TestDashboardFiles:
    @pytest.mark.parametrize(("path", "content_type"), [
        ("/ui/", "text/html"), ("/ui/app.js", "text/javascript"),
        ("/ui/views/task.js", "text/javascript"), ("/ui/style.css", "text/css")])
    async def test_served_without_a_token(self, secure, path, content_type):
        status, headers, _ = await get(secure, path)
        assert status == 200
        assert headers["Content-Type"].startswith(content_type)
        assert "default-src 'none'" in headers["Content-Security-Policy"]

    async def test_ui_redirects_to_its_index(self, secure):
        url = f"http://127.0.0.1:{secure.orch.http_port}/ui"
        async with aiohttp.ClientSession() as session, session.get(
                url, allow_redirects=False) as reply:
            assert reply.status == 302 and reply.headers["Location"] == "/ui/"

    @pytest.mark.parametrize("path", ["/ui/../v1/agents", "/ui/%2e%2e/v1/agents",
                                      "/ui/..%2fv1/agents", "/ui/%2e%2e%2fv1%2fstats"])
    async def test_no_way_from_ui_to_the_data_without_a_token(self, secure, path):
        url = URL(f"http://127.0.0.1:{secure.orch.http_port}{path}", encoded=True)
        async with aiohttp.ClientSession() as session, session.get(url) as reply:
            body = await reply.read()
        assert reply.status in (401, 404), (path, reply.status)
        assert b"agent_id" not in body and b"by_status" not in body

    async def test_files_outside_the_static_folder_are_not_served(self, secure):
        for path in ("/ui/__init__.py", "/ui/../__init__.py", "/ui/nothing.js"):
            assert (await get(secure, path))[0] in (401, 404), path

    async def test_the_data_routes_still_need_a_token(self, secure):
        assert (await get(secure, "/v1/agents"))[0] == 401
