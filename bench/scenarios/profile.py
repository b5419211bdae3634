"""Where the orchestrator's CPU goes per durable task lifecycle (py-spy; bench/profile.py).

Not in the default list: it needs ptrace rights over the orchestrator process. Run it by
name, `python -m bench profile`; the collapsed stacks go to bench/profile.txt.
"""

from __future__ import annotations

from pathlib import Path

from bench.profile import PROFILE_RATE_HZ, per_lifecycle_ms, samples_by_concern
from bench.scenarios.tasks import lifecycles
from bench.sizes import Size

STACKS = Path("bench/profile.txt")


async def run(size: Size) -> dict[str, float]:
    STACKS.unlink(missing_ok=True)  # noqa: ASYNC240 (before anything runs)
    cpu: dict[str, float] = {}
    count = size.tasks * 2  # enough samples for a stable table
    rate, _ = await lifecycles(count, "always", with_baseline=False, profile_to=STACKS,
                               cpu=cpu)
    stacks = STACKS.read_text() if STACKS.exists() else ""  # noqa: ASYNC240 (after the run)
    counts = samples_by_concern(stacks)
    shares = {f"cpu_share.{name}": round(seconds / cpu["wall"], 3)
              for name, seconds in cpu.items() if name != "wall"}
    table = {f"cpu_ms_per_lifecycle.{k}": v
             for k, v in per_lifecycle_ms(counts, PROFILE_RATE_HZ, count).items()}
    return {"tasks": count, "durable_tasks_per_s": rate, **shares, **table}
