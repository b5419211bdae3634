"""The keys every orchestrator of one deployment must share, as one file.

Several orchestrators against one NATS are one deployment: the server's configuration
names one callout issuer and the orchestrator's two users (infra.auth.credentials), and
the log holds one local operator identity. So each of them needs the same three seeds:

- `issuer.nk`: every orchestrator answers the auth callout (one queue group); the server
  takes only answers signed by the issuer its configuration names.
- `orchestrator.nk`: the server knows the orchestrator's two users by their public keys
  (the second derives from this seed); any other key is refused.
- `operator.nk`: the local operator identity is registered once, with this key, by the
  first orchestrator; the CLI beside any other connects as `operator` with its copy.

Not in the bundle: `read.token` (a read API bearer token; tokens live in the log, so any
token works on every orchestrator, and each makes its own on first start) and `agents/`
(the seeds of agents started on that machine: theirs, not the orchestrator's).

`export_bundle` reads them whole or not at all; `import_bundle` writes each one 0600,
keeps one that is there already and identical, and refuses (KeysDiffer) to replace one
that differs unless forced. No message here ever holds a seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from infra.auth.credentials import Keys, read_secret, write_secret
from infra.auth.keys import Role, public_key
from infra.private_files import FILE_MODE, private_dir

FORMAT = "orchestrator-keys/1"

# The shared seeds: file name in <data dir>/auth/, and the kind of key each must be.
SHARED: tuple[tuple[str, Role], ...] = (
    ("issuer.nk", Role.ACCOUNT),
    ("orchestrator.nk", Role.USER),
    ("operator.nk", Role.USER),
)
SHARED_NAMES = tuple(name for name, _ in SHARED)


class KeysMissing(Exception):
    """A data directory lacks some of the shared keys (their names are in `missing`)."""

    def __init__(self, keys: Keys, missing: list[str]) -> None:
        self.missing = missing
        super().__init__(f"{keys.directory} lacks {', '.join(missing)}")


class KeysDiffer(Exception):
    """An import would replace keys that are there and differ (`differing`)."""

    def __init__(self, keys: Keys, differing: list[str]) -> None:
        self.differing = differing
        super().__init__(f"{keys.directory} holds other keys as {', '.join(differing)}")


class BadBundle(ValueError):
    """Not a key bundle this version reads (the message never quotes its content)."""


def missing_keys(keys: Keys) -> list[str]:
    """The shared keys not in the data directory, by file name."""
    return [name for name in SHARED_NAMES if not (keys.directory / name).exists()]


def export_bundle(keys: Keys) -> str:
    """The bundle's text: every shared seed of `keys`, or KeysMissing."""
    missing = missing_keys(keys)
    if missing:
        raise KeysMissing(keys, missing)
    seeds = {name: read_secret(keys.directory / name) for name in SHARED_NAMES}
    return orjson.dumps({"format": FORMAT, "keys": seeds},
                        option=orjson.OPT_INDENT_2).decode() + "\n"


def parse_bundle(text: str) -> dict[str, str]:
    """The seeds of a bundle by file name, each checked to be a seed of its kind."""
    try:
        loaded = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise BadBundle("not a key bundle (not JSON): use the file `orchestrator auth "
                        "export` wrote") from None
    if not isinstance(loaded, dict) or loaded.get("format") != FORMAT:
        raise BadBundle(f"not a key bundle of format {FORMAT}: use the file `orchestrator "
                        f"auth export` wrote")
    seeds = loaded.get("keys")
    if not isinstance(seeds, dict) or set(seeds) != set(SHARED_NAMES):
        raise BadBundle(f"a key bundle holds exactly {', '.join(SHARED_NAMES)}")
    for name, role in SHARED:
        if not _is_seed_of(seeds[name], role):
            kind = "an account" if role is Role.ACCOUNT else "a user"
            raise BadBundle(f"{name} in the bundle is not {kind} seed")
    return {name: str(seeds[name]).strip() for name in SHARED_NAMES}


def _is_seed_of(seed: object, role: Role) -> bool:
    if not isinstance(seed, str):
        return False
    try:
        public = public_key(seed)
    except Exception:  # any malformed seed; its content is not repeated
        return False
    return public.startswith({Role.ACCOUNT: "A", Role.USER: "U"}[role])


@dataclass
class Imported:
    """What an import did, by file name."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)


def import_bundle(keys: Keys, text: str, force: bool = False) -> Imported:
    """Write the bundle's seeds into `keys`' directory (0700, files 0600). Identical keys
    there already are kept; differing ones refused (KeysDiffer) unless `force`, and then
    replaced. Nothing is written when anything is refused."""
    seeds = parse_bundle(text)
    done = Imported()
    differing = []
    for name in SHARED_NAMES:
        path = keys.directory / name
        if not path.exists():
            done.written.append(name)
        elif read_secret(path) == seeds[name]:
            done.unchanged.append(name)
        else:
            differing.append(name)
    if differing and not force:
        raise KeysDiffer(keys, differing)
    done.replaced = differing
    private_dir(keys.directory)
    for name in done.written:
        write_secret(keys.directory / name, seeds[name] + "\n")
    for name in done.replaced:
        _replace_secret(keys.directory / name, seeds[name] + "\n")
    return done


def _replace_secret(path: Path, text: str) -> None:
    """Replace `path` at once (a new file renamed over it), mode 0600 throughout."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(temporary, path)
