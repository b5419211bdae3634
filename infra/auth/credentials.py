"""The keys of a deployment, in `<data dir>/auth/`: made on first start with mode 0600,
never overwritten, and the nats-server configuration that trusts them.

- `issuer.nk`: the account seed that signs the users the auth callout admits.
- `orchestrator.nk`: the orchestrator's own user seed; its second user's key derives
  from it (infra.auth.own_users): the two users NATS knows.
- `operator.nk`: the local operator's seed (identity `operator`), for the CLI here.
- `read.token`: a read API token, for the dashboard and curl here.
- `agents/<id>.nk`: the seeds of agents started with `orchestrator agent` here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from infra.auth.keys import Role, new_seed, public_key
from infra.auth.own_users import (
    log_user_permissions,
    serving_seed,
    serving_user_permissions,
    user_block,
)
from infra.names import Names
from infra.private_files import make_private_dirs, private_dir

ACCOUNT = "ORCH"  # the one account everything lives in (JetStream included)


def write_secret(path: Path, text: str) -> None:
    """Create `path` holding `text`, readable by its owner only; never replaces a file."""
    make_private_dirs(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def read_secret(path: Path) -> str:
    return path.read_text().strip()


@dataclass(frozen=True)
class Keys:
    """Where a deployment's keys are; `ensure` makes the missing ones."""

    directory: Path

    @classmethod
    def of(cls, data_dir: Path) -> Keys:
        return cls(Path(data_dir) / "auth")

    @property
    def issuer(self) -> Path:
        return self.directory / "issuer.nk"

    @property
    def orchestrator(self) -> Path:
        return self.directory / "orchestrator.nk"

    @property
    def operator(self) -> Path:
        return self.directory / "operator.nk"

    @property
    def read_token(self) -> Path:
        return self.directory / "read.token"

    def agent(self, agent_id: str) -> Path:
        return self.directory / "agents" / f"{agent_id}.nk"

    def ensure(self) -> None:
        private_dir(self.directory)  # ours: narrowed if an earlier version made it wider
        for path, role in ((self.issuer, Role.ACCOUNT), (self.orchestrator, Role.USER),
                           (self.operator, Role.USER)):
            if not path.exists():
                write_secret(path, new_seed(role) + "\n")

    def issuer_seed(self) -> str:
        return read_secret(self.issuer)

    def orchestrator_seed(self) -> str:
        """The log user's seed (infra.auth.own_users)."""
        return read_secret(self.orchestrator)

    def serving_seed(self) -> str:
        """The serving user's seed, derived from the log user's."""
        return serving_seed(self.orchestrator_seed())


def server_auth_config(issuer_public: str, log_seed: str, names: Names,
                       auth_timeout_s: float = 2.0) -> str:
    """The nats-server configuration block: one account with JetStream, the orchestrator's
    two users (infra.auth.own_users) its only configured ones, everyone else decided by
    the orchestrator's auth callout."""
    log_public, serving_public = public_key(log_seed), public_key(serving_seed(log_seed))
    return (
        "accounts {\n"
        f"  {ACCOUNT} {{\n"
        "    jetstream: enabled\n"
        "    users: [\n"
        f"      {user_block(log_public, log_user_permissions(names))}\n"
        f"      {user_block(serving_public, serving_user_permissions(names))}\n"
        "    ]\n"
        "  }\n"
        "}\n"
        "authorization {\n"
        f"  timeout: {auth_timeout_s}\n"
        "  auth_callout {\n"
        f'    issuer: "{issuer_public}"\n'
        f'    auth_users: [ "{log_public}", "{serving_public}" ]\n'
        f"    account: {ACCOUNT}\n"
        "  }\n"
        "}\n"
    )


def server_auth_config_for(keys: Keys, names: Names) -> str:
    return server_auth_config(public_key(keys.issuer_seed()), keys.orchestrator_seed(), names)
