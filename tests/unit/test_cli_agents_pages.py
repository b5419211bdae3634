"""`orchestrator agents` lists every agent: it follows /v1/agents's pages to the last."""

from __future__ import annotations

import argparse
from typing import Any

import orjson
import pytest

from services.cli import fleet
from services.cli.read_api import Answer

IDS = [f"a{i}" for i in range(5)]


class PagedApi:
    """The route's contract: `limit` ids after `after`, and next_after while more follow."""

    def __init__(self, page: int) -> None:
        self.page = page
        self.requests: list[dict[str, str]] = []

    async def get(self, path: str, params: Any, wait: float | None = None) -> Answer:
        query = dict(params)
        self.requests.append(query)
        after = query.get("after", "")
        rest = [i for i in IDS if i > after]
        shown = rest[:self.page]
        agents = [{"agent_id": i} for i in shown]
        return Answer({"agents": agents,
                       "next_after": shown[-1] if len(rest) > self.page else None}, 7)


async def test_the_listing_follows_next_after(
        capsys: pytest.CaptureFixture[str]) -> None:
    api = PagedApi(page=2)
    args = argparse.Namespace(status=None, capability=None, label=[], json=True, watch=False)
    assert await fleet._agents(api, args) == 0  # type: ignore[arg-type]
    assert [a["agent_id"] for a in orjson.loads(capsys.readouterr().out)["agents"]] == IDS
    assert [r.get("after") for r in api.requests] == [None, "a1", "a3"]
