"""Plain-text output for the audit commands: tables, a progress bar, explanations."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Columns padded to their widest cell."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class ProgressBar:
    """A bar on stderr for replays that take more than a moment (shown after 0.5 s), on a
    terminal only: piped or redirected, it says nothing."""

    def __init__(self, label: str, out: TextIO | None = None, delay: float = 0.5) -> None:
        self.label = label
        self.out = sys.stderr if out is None else out
        self.enabled = _is_terminal(self.out)
        self.started = time.monotonic()
        self.delay = delay
        self.shown = False
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.started < self.delay or (
                now - self._last < 0.1 and done < total):
            return
        self._last = now
        self.shown = True
        fraction = done / total if total else 1.0
        filled = int(fraction * 30)
        self.out.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] "
                       f"{fraction:6.1%} {done}/{total}")
        self.out.flush()

    def close(self) -> None:
        if self.shown:
            self.out.write("\n")
            self.out.flush()


def _is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def explanation(chain: list[dict[str, Any]], indent: str = "") -> list[str]:
    """One line per step of a causal chain, with what caused each move."""
    lines = []
    for step in chain:
        sender = step.get("identity")
        by = f" (by {sender})" if sender and sender != "orchestrator" else ""
        lines.append(f"{indent}{step['position']:>6}  {step['at']}  {step['type']:<18} "
                     f"{step.get('reason') or _gist(step)}{by}")
        cause = step.get("cause")
        if cause:
            lines.append(f"{indent}        caused by {cause['type']} of {cause.get('aggregate_id')}"
                         f" (event {cause.get('event_id')})")
            for key in ("suspected",):
                if key in cause:
                    lines.append(f"{indent}          after {cause[key]['type']} at "
                                 f"{cause[key]['at']}: {_detector(cause[key].get('detector'))}")
            if "detector" in cause:
                lines.append(f"{indent}          detector: {_detector(cause['detector'])}")
        placement = step.get("placement")
        if placement:
            lines.append(f"{indent}        placement: {placement['reason']}")
            for candidate in placement["considered"]:
                lines.append(f"{indent}          candidate {candidate['agent_id']}: load "
                             f"{candidate['load']}/{candidate['capacity']}")
        if "detector" in step:
            lines.append(f"{indent}        detector: {_detector(step['detector'])}")
    return lines


def _detector(reading: dict[str, Any] | None) -> str:
    if not reading:
        return "-"
    return ", ".join(f"{k}={v}" for k, v in reading.items())


def _gist(step: dict[str, Any]) -> str:
    data = step["data"]
    keys = ("agent_id", "from_agent", "attempt", "reason", "error", "action", "incarnation",
            "silence_s")
    return " ".join(f"{k}={data[k]}" for k in keys if data.get(k) not in (None, ""))
