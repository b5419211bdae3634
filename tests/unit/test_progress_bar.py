"""The audits' progress bar draws on a terminal only: piped, the output stays clean."""

from __future__ import annotations

import io

from services.audit.render import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_draws_on_a_terminal() -> None:
    out = Terminal()
    bar = ProgressBar("replaying", out=out, delay=0)
    bar(5, 10)
    bar.close()
    assert "replaying [" in out.getvalue() and "5/10" in out.getvalue()
    assert out.getvalue().endswith("\n")


def test_the_bar_says_nothing_when_piped() -> None:
    out = io.StringIO()
    bar = ProgressBar("replaying", out=out, delay=0)
    bar(5, 10)
    bar(10, 10)
    bar.close()
    assert out.getvalue() == ""
