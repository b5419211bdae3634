"""Every command endpoint's spec, by subject (`SPECS`): one per command of
services/commands/table.py, each with every field of its model (tests/fuzz/test_commands.py
checks both)."""

from __future__ import annotations

from tests.fuzz.payloads.admin import ADMIN_SPECS
from tests.fuzz.payloads.agents import AGENT_SPECS, CATALOG_SPEC
from tests.fuzz.payloads.limits import LIMIT_SPEC
from tests.fuzz.payloads.schedules import SCHEDULE_SPECS
from tests.fuzz.payloads.spec import Spec
from tests.fuzz.payloads.tasks import REPORT_SPECS, SUBMITTER_SPECS

SPECS: dict[str, Spec] = {s.command: s for s in (
    *SCHEDULE_SPECS,
    LIMIT_SPEC,
    *AGENT_SPECS,
    *REPORT_SPECS,
    *SUBMITTER_SPECS,
    *ADMIN_SPECS,
    CATALOG_SPEC,
)}
