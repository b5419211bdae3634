"""The soak's figures: RSS growth per 1,000 finished tasks, how soon a killed agent's
work moved, the warnings and errors in the orchestrators' logs; and the table printed."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.soak.invariants import Kill, Verdict
from bench.soak.workload import RssSample

MIB = 1024 * 1024
WARMUP_S = 60.0  # of each orchestrator process: start-up and first allocations
LEVELS = re.compile(r" (WARNING|ERROR|CRITICAL) ")
VARYING = re.compile(r"\b[0-9a-f]{8,}\b|\b[st]-?[\w-]{6,}\b|\d+(\.\d+)?")
# Warnings the soak causes on purpose, and why; any other line is unexpected.
EXPECTED = {
    "reason='no nkey: every client proves a key'":
        "an orchestrator starting against the external server first checks that it lets "
        "no client in without credentials (services/auth/external.py); another one's "
        "callout refuses that probe",
}


def _at(event: Mapping[str, Any]) -> float:
    return datetime.fromisoformat(event["recorded_at"]).timestamp()


def _slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if not spread:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def rss_figures(samples: Sequence[RssSample]) -> dict[str, dict[str, float]]:
    """Per orchestrator process ("<name>#<start>"): RSS first, last and peak (MiB), and
    its growth per 1,000 finished tasks past its warm-up (least squares)."""
    series: dict[str, list[tuple[float, int, int]]] = defaultdict(list)
    for sample in samples:
        for process, rss in sample.rss.items():
            series[process].append((sample.at, sample.finished, rss))
    figures = {}
    for process, points in series.items():
        begun = points[0][0]
        warm = [(float(f), r / MIB) for at, f, r in points if at - begun >= WARMUP_S]
        tasks = warm[-1][0] - warm[0][0] if len(warm) > 1 else 0.0
        figures[process] = {
            "first_mib": round(points[0][2] / MIB, 1),
            "last_mib": round(points[-1][2] / MIB, 1),
            "peak_mib": round(max(r for _, _, r in points) / MIB, 1),
            "seconds": round(points[-1][0] - begun, 1),
            "tasks_after_warmup": tasks,
            "mib_per_1000_tasks": round(_slope(warm) * 1000, 3) if tasks >= 500 else 0.0,
        }
    return figures


def kill_figures(events: Iterable[Mapping[str, Any]], kills: Sequence[Kill]
                 ) -> list[dict[str, Any]]:
    """For each killed agent: seconds from the kill to its death in the log, and to the
    last of its tasks moved (reassigned or requeued) before it registered again."""
    log = list(events)
    figures = []
    for kill in kills:
        dead = next((e for e in log if e["type"] == "DeclaredDead"
                     and e["aggregate_id"] == kill.agent_id
                     and int(e["data"]["incarnation"]) == kill.incarnation), None)
        back = next((int(e["position"]) for e in log if e["type"] == "Reregistered"
                     and e["aggregate_id"] == kill.agent_id
                     and int(e["data"]["incarnation"]) > kill.incarnation), None)
        moved = [e for e in log if e["type"] in ("Reassigned", "Requeued")
                 and e["data"].get("from_agent") == kill.agent_id and _at(e) >= kill.at
                 and (back is None or int(e["position"]) < back)]
        figures.append({
            "agent_id": kill.agent_id, "incarnation": kill.incarnation,
            "dead_s": round(_at(dead) - kill.at, 3) if dead else None,
            "tasks_moved": len(moved),
            "moved_s": round(max(_at(e) for e in moved) - kill.at, 3) if moved else None,
        })
    return figures


def expected(message: str) -> str | None:
    """Why a warning is expected in the soak, None when it is not."""
    return next((why for pattern, why in EXPECTED.items() if pattern in message), None)


def log_lines(paths: Iterable[Path]) -> dict[str, int]:
    """Warnings and errors in the orchestrators' logs, by message (numbers and ids
    replaced by #), most frequent first."""
    found: Counter[str] = Counter()
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            level = LEVELS.search(line)
            if level:
                message = line[level.start() + 1:]
                found[VARYING.sub("#", message)[:160]] += 1
            elif line.startswith("Traceback"):
                found["Traceback"] += 1
    return dict(found.most_common())


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The rows of the printed table."""
    kills = result["agent_kills"]
    dead = [k["dead_s"] for k in kills if k["dead_s"] is not None]
    moved = [k["moved_s"] for k in kills if k["moved_s"] is not None]
    rows = [
        ("duration (churn, then the drain)", f"{result['churn_s']:.0f} s + "
                                             f"{result['finish_s']:.0f} s"),
        ("tasks submitted / acknowledged", f"{result['submitted']} / "
                                           f"{result['acknowledged']}"),
        ("tasks finished / per second", f"{result['finished']} / "
                                        f"{result['finished_per_s']:.1f}"),
        ("completed / dead-lettered / cancelled",
         " / ".join(str(result["verdict"]["counts"].get(t, 0))
                    for t in ("Completed", "DeadLettered", "Cancelled"))),
        ("events in the log", str(result["verdict"]["counts"].get("events", 0))),
        ("agent kills: declared dead p50 / max",
         f"{len(kills)}: {percentile(dead, 0.5):.2f} s / {max(dead, default=0):.2f} s"),
        ("agent kills: last task moved p50 / max",
         f"{percentile(moved, 0.5):.2f} s / {max(moved, default=0):.2f} s "
         f"({sum(k['tasks_moved'] for k in kills)} tasks)"),
        ("drains", str(len(result["drains"]))),
    ]
    for kill in result["leader_kills"]:
        rows.append(("leader kill: new leader after", f"{kill.get('failover_s')} s "
                     f"({kill.get('killed')} -> {kill.get('new_leader')})"))
    for process, rss in result["rss"].items():
        rows.append((f"RSS {process}", f"{rss['first_mib']} -> {rss['last_mib']} MiB "
                     f"(peak {rss['peak_mib']}), {rss['mib_per_1000_tasks']:+.3f} MiB per "
                     f"1,000 tasks over {rss['tasks_after_warmup']:.0f}"))
    lines = result["log_lines"]
    rows.append(("log warnings/errors (unexpected)", f"{sum(lines.values())} ("
                 f"{sum(n for m, n in lines.items() if expected(m) is None)})"))
    return rows


def render(result: Mapping[str, Any], verdict: Verdict) -> str:
    rows = summary(result)
    width = max(len(name) for name, _ in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    lines.append("")
    for name, problems in verdict.problems.items():
        lines.append(f"{'FAIL' if problems else 'ok  '}  {name}"
                     + (f": {len(problems)}, e.g. {problems[0]}" if problems else ""))
    if verdict.raced:
        lines.append(f"      placements that raced a drain or death: {len(verdict.raced)}")
    for message, count in list(result["log_lines"].items())[:15]:
        lines.append(f"log {count:6d}  {message}"
                     + ("" if expected(message) is None else "  (expected)"))
    return "\n".join(lines)
