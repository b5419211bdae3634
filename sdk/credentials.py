"""An agent's own key: made once where the agent runs, kept there (mode 0600), and
never sent anywhere; the orchestrator only ever sees its public half."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import nkeys


def load_or_create_seed(path: str | Path) -> str:
    """The nkey seed in `path`, made there first if it does not exist yet."""
    seed_file = Path(path)
    if not seed_file.exists():
        seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER).decode()
        seed_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(seed_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(seed + "\n")
    return seed_file.read_text().strip()
