"""One shape of an agent across layers: the projection's JSON is the read API's model."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from projections.fleet.agents import AgentView
from services.http.models import AgentOut

AT = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize("view", [
    AgentView("a1", 1, ["cpu"], 2, {"zone": "eu"}, [], AT, AT),
    AgentView("a2", 3, [], 1, {}, [{"name": "web", "address": "h", "port": 80}], AT, AT,
              liveness="suspect", last_heartbeat_at=AT, load=0.5, running=["t1"],
              kinds=["resize"], unresponsive_until=1_800_000_000.0, progress_every_s=2.5),
])
def test_an_agents_json_is_exactly_the_read_api_model(view: AgentView) -> None:
    shown = view.to_json()
    assert list(shown) == list(AgentOut.model_fields)  # every key, in the model's order
    assert AgentOut.model_validate(shown).model_dump() == shown
