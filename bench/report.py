"""The results table and bench/results.json."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson

from infra.bus.embedded import server_binary

TARGETS: dict[str, dict[str, str]] = {
    "heartbeats": {"applied_per_s": ">= 20000", "lag_p99_ms": "<= 250",
                   "saturation_ratio": ">= 0.5"},
    "failover": {"p99_ms": "<= 100", "double_assignments": "== 0",
                 "death_late_p99_ms": "<= 100"},
    "tasks": {"durable_tasks_per_s": ">= 2000", "ratio_batched": ">= 0.5",
              "log_bytes_per_lifecycle": "<= 1536"},
    "commands": {"register_p99_ms": "<= 2", "deliver_p99_ms": "<= 10"},
    "rebuild": {"ratio": ">= 0.5", "ready_from_snapshot_s": "<= 2", "snapshot_stall_ms": "<= 50"},
    "api": {"ratio": ">= 0.5", "p99_ms": "<= 5", "p99_vs_baseline": "<= 2"},
    "memory": {"bytes_per_agent": "<= 1024", "bytes_per_finished_task": "<= 512"},
    "eventsourcing_peers": {"jetstream_insert_us": "<= 1000",
                            "jetstream_vs_postgres": ">= 1"},
    "export": {"false_suspicions_during_export": "== 0"},
    # Progress reports add no event to a lifecycle: as many as one without progress (4).
    "client": {"result_p99_ms_at_100": "<= 10", "submit_many_ratio": ">= 2",
               "events_per_lifecycle_with_progress": "<= 4",
               "progress_events_per_lifecycle": "== 0",
               "log_bytes_per_lifecycle_with_progress": "<= 1500"},
    # burst_rss_bytes is held to burst_rss_bound_bytes, computed in the same run.
    "flow": {"lifecycles_ratio_with_limits": ">= 0.9", "placement_cpu_ms_p99": "<= 1"},
    # The TypeScript SDK's agent within 20 % of the Python SDK's, on the same machine.
    "sdk_ts": {"agent_ratio_vs_python": ">= 0.8"},
    # A successor's first placement within the lease TTL of the SIGKILL (5 s at the full
    # size, the default TTL; the ratio holds at any size's TTL).
    "ha": {"succession_p99_s": "<= 5", "succession_p99_vs_ttl": "<= 1"},
}


def meets(value: float | None, target: str) -> str:
    if value is None:
        return "n/a"
    op, number = target.split()
    limit = float(number)
    ok = {">=": value >= limit, "<=": value <= limit, "==": value == limit}[op]
    return "yes" if ok else "NO"


def environment(size: str) -> dict[str, Any]:
    nats_version = subprocess.run([server_binary(), "--version"], capture_output=True,
                                  text=True, check=False).stdout.strip()
    return {
        "size": size, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "platform": platform.platform(),
        "nats_server": nats_version,
    }


def render(results: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'scenario':<20} {'metric':<34} {'value':>14}  {'target':<10} met"]
    for scenario, metrics in results.items():
        for name, value in metrics.items():
            target = TARGETS.get(scenario, {}).get(name, "")
            shown = f"{value:,.2f}" if isinstance(value, int | float) else str(value)
            met = meets(value, target) if target and isinstance(value, int | float) else ""
            lines.append(f"{scenario:<20} {name:<34} {shown:>14}  {target:<10} {met}")
    return "\n".join(lines)


def write(path: Path, results: dict[str, dict[str, Any]], size: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps({"scenarios": results, "environment": environment(size)},
                                  option=orjson.OPT_INDENT_2))
