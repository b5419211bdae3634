"""Directories and files of the orchestrator's own, readable by its user alone.

The data directory holds the event store, keys, and nats-server's log, which names every
identity, public key and client host that connected: nothing another local user should
list or read. Modes are set explicitly, not left to the umask.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """`path` as a directory of mode 0700 (narrowed if it was made wider before), with
    every missing parent made 0700 too."""
    make_private_dirs(path)
    Path(path).chmod(DIR_MODE)
    return Path(path)


def make_private_dirs(path: Path) -> None:
    """`path` and its missing parents made 0700 (Path.mkdir(parents=True) gives the
    parents the default mode, 0755); the modes of those that exist are left alone."""
    path = Path(path)
    missing = []
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            directory.mkdir(mode=DIR_MODE)


def private_file(path: Path) -> None:
    """Narrow an existing file to 0600 (one an earlier version made world-readable)."""
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, FILE_MODE)


def write_private(path: Path, text: str) -> None:
    """Write `path` whole, mode 0600 whatever it was."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    with os.fdopen(fd, "w") as out:
        out.write(text)
