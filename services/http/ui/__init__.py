"""The dashboard: plain ES modules and CSS served under /ui/, no build step, no CDN.

The files hold no data (the page asks the /v1 read API, with the token the user gives
it), so they are served without a token (services/auth/http.py `required_scope`).
"""

from __future__ import annotations

from pathlib import Path

import orjson
from aiohttp import web

STATIC_DIR = Path(__file__).parent / "static"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
          ".png": "image/png", ".svg": "image/svg+xml", ".txt": "text/plain"}
# Everything from this origin only: no CDN, no inline script, no framing.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def _files() -> dict[str, tuple[bytes, str]]:
    """Every served file by its path under /ui/, read once: nothing else is reachable."""
    found = {}
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file() and path.suffix in _TYPES:
            found[path.relative_to(STATIC_DIR).as_posix()] = (path.read_bytes(),
                                                              _TYPES[path.suffix])
    return found


def add_ui_routes(app: web.Application, auth: bool = False) -> None:
    """`/ui/` (index.html), `/ui/<file>`, `/ui` redirecting to `/ui/`, and
    `/ui/config.json`: whether the API wants a token, so that a page without one asks for
    it at once instead of being refused first (a 401 the browser logs as an error)."""
    files = _files()
    files["config.json"] = (orjson.dumps({"auth": auth}), "application/json")

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("path") or "index.html"
        found = files.get(name)
        if found is None:
            raise web.HTTPNotFound(reason=f"no file {name} in the dashboard")
        body, content_type = found
        response = web.Response(body=body, content_type=content_type, headers=_HEADERS)
        if content_type.startswith("text/"):
            response.charset = "utf-8"
        return response

    async def redirect(request: web.Request) -> web.StreamResponse:
        # Returned, not raised: the API's error envelope would turn a raised one into JSON.
        return web.Response(status=302, headers={"Location": "/ui/"})

    app.router.add_get("/ui", redirect)
    app.router.add_get("/ui/", serve)
    app.router.add_get("/ui/{path:.+}", serve)
