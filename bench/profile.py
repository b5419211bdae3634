"""`python -m bench profile`: where the orchestrator's CPU goes per task lifecycle.

py-spy samples the orchestrator process (on-CPU samples only) while the tasks scenario
runs durable lifecycles against it; each sample is charged to the first frame of its stack
(innermost first) that belongs to a known concern, and the table gives CPU milliseconds per
lifecycle by concern. The raw collapsed stacks are kept beside the JSON for a flame graph.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

# Concerns by where a frame's code lives, tried innermost frame first. The first match
# wins: a frame of our event store calling orjson counts as encoding, not as the store.
CONCERNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pydantic models", ("pydantic/", "pydantic_core/")),
    ("eventsourcing mapper", ("eventsourcing/", "infra/log/format/")),
    ("nats client", ("nats/aio/", "nats/js/", "nats/protocol/", "nats/micro/")),
    ("asyncio loop and sockets", ("asyncio/", "selectors.py", "uvloop/")),
    ("event store and group commit", ("infra/log/event_store.py", "infra/log/group_commit.py",
                                      "infra/log/repository.py")),
    ("domain decisions", ("domain/",)),
    ("projections", ("projections/",)),
    ("command service", ("services/commands/",)),
    ("dispatcher and leader", ("services/leader/",)),
    ("health monitor", ("services/health/",)),
    ("metrics", ("prometheus_client/", "services/metrics.py")),
    ("logging", ("logging/",)),
)
OTHER = "other"
PROFILE_RATE_HZ = 250  # samples per second: enough for 0.1 ms/lifecycle resolution


def classify(stack: str) -> str:
    """The concern of one collapsed stack (`frame;frame;...`, outermost first)."""
    for frame in reversed(stack.split(";")):
        for concern, markers in CONCERNS:
            if any(marker in frame for marker in markers):
                return concern
    return OTHER


def samples_by_concern(collapsed: str) -> Counter[str]:
    """py-spy's raw output: one `stack count` per line."""
    counts: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[classify(stack)] += int(count)
    return counts


def per_lifecycle_ms(counts: Counter[str], rate_hz: int, lifecycles: int) -> dict[str, float]:
    """CPU milliseconds per lifecycle by concern, and their total."""
    if not lifecycles:
        return {}
    scale = 1000.0 / rate_hz / lifecycles
    table = {concern: round(n * scale, 4) for concern, n in counts.most_common()}
    table["total"] = round(sum(counts.values()) * scale, 4)
    return table


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def sampled(pid: int, output: Path, rate_hz: int) -> Iterator[None]:
    """py-spy attached to `pid` for the body of the with-block."""
    spy = Path(sys.executable).with_name("py-spy")
    process = subprocess.Popen(
        [str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate_hz),
         "--output", str(output), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
