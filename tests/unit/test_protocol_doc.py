"""docs/protocol.md and docs/schemas cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.names import COMMANDS, Names
from services.schemas import schema_documents

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCHEMAS = DOCS / "schemas"
REGENERATE = "docs/schemas is out of date with the protocol models: run `make schemas`"


@pytest.fixture(scope="module")
def protocol() -> str:
    return (DOCS / "protocol.md").read_text()


class TestSchemas:
    @pytest.mark.parametrize("name", sorted(schema_documents()))
    def test_each_schema_is_written_as_generated(self, name: str) -> None:
        path = SCHEMAS / name
        assert path.is_file(), f"{name} is missing; {REGENERATE}"
        assert path.read_bytes() == schema_documents()[name], f"{name} differs; {REGENERATE}"

    def test_no_schema_is_left_over(self) -> None:
        stale = {p.name for p in SCHEMAS.glob("*.json")} - set(schema_documents())
        assert not stale, f"{sorted(stale)} no longer generated: delete them and {REGENERATE}"


class TestProtocolDoc:
    @pytest.mark.parametrize("command", COMMANDS)
    def test_documents_each_command_subject(self, protocol: str, command: str) -> None:
        assert f"`{Names().command(command)}`" in protocol

    @pytest.mark.parametrize("name", sorted(schema_documents()))
    def test_links_each_schema(self, protocol: str, name: str) -> None:
        assert f"(schemas/{name})" in protocol
