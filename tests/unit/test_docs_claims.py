"""Claims docs/ makes about the code, checked against it: what the SDK heartbeats as its
load, that TLS is built, what is kept on local disk, and that an agent reconnects forever.
(README's console sessions, examples and links are checked in tests/integration/
test_readme.py; the protocol's subjects, schemas and codes in test_protocol_doc.py.)"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from infra.auth.credentials import Keys
from infra.private_files import DIR_MODE
from infra.settings import Settings
from sdk.agent import AgentClient

DOCS = Path(__file__).resolve().parents[2] / "docs"


def section(doc: str, heading: str) -> str:
    """The text under `## heading`, up to the next heading of that level."""
    text = (DOCS / doc).read_text()
    found = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert found, f"{doc} has no section {heading}"
    return found.group(1)


def prose(text: str) -> str:
    return " ".join(text.split())


class TestTheSdksLoad:
    def test_is_its_running_tasks_over_its_capacity_unless_the_program_sets_it(self) -> None:
        agent = AgentClient("a1", capacity=4)
        agent.running = ["t1", "t2"]
        assert agent.current_load == 0.5
        agent.load = 0.9
        assert agent.current_load == 0.9

    def test_is_said_so_where_the_protocol_speaks_of_it(self) -> None:
        heartbeats, sdk = prose(section("protocol.md", "Heartbeats")), prose(
            section("protocol.md", "The Python SDK"))
        assert "The Python SDK sends the tasks it runs over its capacity" in heartbeats
        assert "its running tasks over its capacity" in sdk
        assert "`0.0` unless" not in heartbeats + sdk


class TestTls:
    def test_is_built_and_not_listed_as_planned(self) -> None:
        assert {"tls_cert", "tls_key", "nats_tls_ca"} <= set(vars(Settings()))
        planned = prose(section("protocol.md", "Planned"))
        assert "built since: TLS" in planned and "Nothing listed there is left unbuilt" in planned


class TestLocalState:
    def test_the_keys_are_what_is_kept_on_local_disk(self) -> None:
        kept = prose(section("how-it-works.md", "Restart and snapshots"))
        assert "Nothing is kept locally" not in kept
        assert Keys.of(Path("<data dir>")).operator.parent == Path("<data dir>/auth")
        assert f"`<data dir>/auth`, mode {DIR_MODE:o}" in kept.replace("0700", "700")


class TestReconnecting:
    def test_the_checklist_says_forever_as_the_sdk_does(self) -> None:
        checklist = prose(section("protocol.md", "Agent lifecycle checklist"))
        assert "**reconnect forever**" in checklist
        assert "max_reconnect_attempts=-1" in inspect.getsource(AgentClient._connect)
