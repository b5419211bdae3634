"""`orchestrator completion bash|zsh`: the shell completion script, generated from the
parser with shtab, so that it always knows every command and flag."""

from __future__ import annotations

import argparse
from typing import Any

SHELLS = ("bash", "zsh")


def add_completion_command(commands: Any) -> None:
    completion = commands.add_parser(
        "completion", help="print the shell completion script (bash or zsh)",
        description="Load it in the current shell with "
                    "`source <(.venv/bin/orchestrator completion bash)`, or write it where "
                    "your shell looks for completions.")
    completion.add_argument("shell", choices=SHELLS)


def run_completion(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import shtab

    print(shtab.complete(parser, shell=args.shell), end="")
    return 0
