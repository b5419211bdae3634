"""`orchestrator auth`: the deployment's keys. `server-config` makes them (on the first
orchestrator of a deployment) and prints the nats-server block that trusts them;
`export` and `import` carry them whole to every other orchestrator of it
(infra.auth.bundle says which keys and why). docs/deployment.md is the guide."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from infra.auth.bundle import (
    SHARED_NAMES,
    KeysDiffer,
    KeysMissing,
    export_bundle,
    import_bundle,
    missing_keys,
)
from infra.auth.credentials import Keys, server_auth_config_for
from infra.names import Names
from infra.private_files import write_private


class KeysRefused(Exception):
    """The keys command was refused; the message is its code and reason."""


def add_auth_commands(commands: Any) -> None:
    auth = commands.add_parser(
        "auth", help="the deployment's keys: the nats-server block, and carrying them to "
                     "another orchestrator",
        description="The deployment's keys. Every orchestrator of one deployment holds the "
                    "same issuer.nk, orchestrator.nk and operator.nk: `server-config` makes "
                    "them where the first runs, `export` there and `import` in each other "
                    "data directory carry them (docs/deployment.md).")
    auth_commands = auth.add_subparsers(dest="auth_command", required=True)
    server_config = auth_commands.add_parser(
        "server-config",
        help="print the block for an external nats-server's configuration; in a data "
             "directory with no keys, make a new deployment's keys first (another "
             "orchestrator of a deployment takes its keys with `auth import` instead)")
    _data_dir_flag(server_config)
    server_config.add_argument(
        "--subject-prefix", default=os.environ.get("ORCH_SUBJECT_PREFIX", "orch"),
        help="the orchestrator's prefix, which its own users' permissions name "
             "(env ORCH_SUBJECT_PREFIX; default orch)")

    export = auth_commands.add_parser(
        "export", help=f"write the keys every orchestrator of this deployment shares "
                       f"({', '.join(SHARED_NAMES)}) to FILE, mode 0600: secrets, carry "
                       f"it as such")
    _data_dir_flag(export)
    export.add_argument("file", type=Path,
                        help="where to write the bundle; '-' for stdout (not a terminal)")

    imported = auth_commands.add_parser(
        "import", help="take the keys of a bundle `auth export` wrote into this data "
                       "directory (0600); identical keys are kept, differing ones refused "
                       "unless --force")
    _data_dir_flag(imported)
    imported.add_argument("file", type=Path, help="the bundle; '-' for stdin")
    imported.add_argument("--force", action="store_true",
                          help="replace keys here that differ from the bundle's (the "
                               "replaced ones are lost)")


def _data_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("ORCH_DATA_DIR", "./.orchestrator")),
                        help="the orchestrator's data directory; its keys are in auth/ "
                             "(env ORCH_DATA_DIR; default ./.orchestrator)")


def run_auth(args: argparse.Namespace) -> int:
    keys = Keys.of(args.data_dir)
    if args.auth_command == "server-config":
        return _server_config(keys, Names(args.subject_prefix))
    if args.auth_command == "export":
        return _export(keys, args.file)
    return _import(keys, args.file, args.force)


def _server_config(keys: Keys, names: Names) -> int:
    missing = missing_keys(keys)
    if missing and len(missing) < len(SHARED_NAMES):
        present = [name for name in SHARED_NAMES if name not in missing]
        raise KeysRefused(
            f"keys_incomplete: {keys.directory} has {', '.join(present)} but not "
            f"{', '.join(missing)}; a deployment's keys go together: run `orchestrator auth "
            f"export FILE` where its keys are and `orchestrator auth import FILE --data-dir "
            f"{keys.directory.parent}` here "
            f"(making the missing ones here would make keys no one else knows)")
    if missing:
        keys.ensure()
        print(f"orchestrator: made a new deployment's keys in {keys.directory}; another "
              f"orchestrator of this deployment takes them with `orchestrator auth export` "
              f"here and `orchestrator auth import` there, not with server-config",
              file=sys.stderr)
    print(server_auth_config_for(keys, names), end="")
    return 0


def _export(keys: Keys, file: Path) -> int:
    try:
        text = export_bundle(keys)
    except KeysMissing as exc:
        raise KeysRefused(
            f"keys_missing: {keys.directory} lacks {', '.join(exc.missing)}: export from "
            f"the data directory of an orchestrator of the deployment (--data-dir)") from None
    if str(file) == "-":
        if sys.stdout.isatty():
            raise ValueError("the bundle holds secrets: not printed to a terminal; give a "
                             "FILE (written 0600), or redirect stdout")
        sys.stdout.write(text)
        return 0
    write_private(file, text)
    print(f"wrote {', '.join(SHARED_NAMES)} of {keys.directory} to {file} (mode 0600; it "
          f"holds secrets): `orchestrator auth import {file}` in the other data directory")
    return 0


def _import(keys: Keys, file: Path, force: bool) -> int:
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read the bundle {file}: {exc.strerror}") from None
    try:
        done = import_bundle(keys, text, force=force)
    except KeysDiffer as exc:
        raise KeysRefused(
            f"keys_differ: {keys.directory} holds other keys as "
            f"{', '.join(exc.differing)} than the bundle (another deployment's, or made "
            f"here by a start or server-config); nothing was written; --force replaces "
            f"them") from None
    said = [f"{what}: {', '.join(names)}" for what, names in (
        ("written", done.written), ("unchanged", done.unchanged),
        ("replaced", done.replaced)) if names]
    print(f"imported into {keys.directory}: {'; '.join(said)}")
    return 0
