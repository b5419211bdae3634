"""The command endpoints under fuzz: every one the orchestrator serves, with its model
(`MODELS`, read from services/commands/table.py), and the subject a command goes out on
for a given sender (`subject_of`)."""

from __future__ import annotations

from typing import Any, cast

from pydantic import BaseModel

from infra.names import AGENT_COMMANDS, CLIENT_COMMANDS, Names
from projections.access import Access
from services.auth.gate import AccessGate
from services.commands.table import command_table
from tests.fuzz.payloads import probe as p
from tests.support import TEST_IDENTITY


class _Handlers:
    """Stands in for the services: the table is read for its names only."""

    def __getattr__(self, name: str) -> Any:
        return None


# Every command endpoint the orchestrator serves, as services/commands/table.py lists them.
_stub = cast(Any, _Handlers())
MODELS: dict[str, type[BaseModel]] = {
    c.name: c.model for c in command_table(_stub, _stub, _stub, _stub, _stub, AccessGate(Access()),
                            _stub, _stub)}
COMMANDS: tuple[str, ...] = tuple(MODELS)


def subject_of(names: Names, command: str, sender: str | None = None) -> str:
    """The subject of `command` sent by `sender`: an agent's command names the agent
    (p.SELF unless told), a client's the identity (the tests' unless told)."""
    if command in AGENT_COMMANDS:
        return names.agent_command(p.SELF if sender is None else sender, command)
    if command in CLIENT_COMMANDS:
        return names.client_command(command, TEST_IDENTITY if sender is None else sender)
    assert sender is None, f"{command} names no sender"
    return names.command(command)
