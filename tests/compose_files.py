"""What the compose tests share: docker-compose.yml loaded, and readers of its services'
commands, mounts, ports and environment."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from infra import settings as settings_module

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
MIN_NATS = (2, 11)  # the Nats-Expected-Last-Subject-Sequence-Subject header (DESIGN §2)
NATS_CLIENT_PORT = 4222
NODES = ("nats-1", "nats-2", "nats-3")
ORCHESTRATORS = ("orchestrator-1", "orchestrator-2", "orchestrator-3")
# Settings each machine has of its own; every other one is the same on every orchestrator.
PER_MACHINE = {settings_module.DATA_DIR, settings_module.HTTP_HOST, settings_module.HTTP_PORT,
               settings_module.TLS_CERT, settings_module.TLS_KEY}


def known_variables() -> set[str]:
    """Every ORCH_* variable infra/settings.py defines as a module-level constant."""
    return {
        value for name, value in vars(settings_module).items()
        if name.isupper() and isinstance(value, str) and value.startswith("ORCH_")
    }


def load_compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, whether written as a mapping or a list."""
    raw = service.get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def as_args(command: str | list[Any]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def flag_value(args: list[str], *flags: str) -> str | None:
    """The value of the first of `flags` in args: `-f value` or `--flag=value`."""
    for i, arg in enumerate(args):
        name, sep, value = arg.partition("=")
        if name in flags:
            if sep:
                return value
            if i + 1 < len(args):
                return args[i + 1]
    return None


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (volume name or host path) of a service's volumes."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        found[target.rstrip("/") or "/"] = source
    return found


def read_only(service: dict[str, Any], target: str) -> bool:
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            if parts[1].rstrip("/") == target:
                return len(parts) > 2 and "ro" in parts[2].split(",")
        elif volume["target"].rstrip("/") == target:
            return bool(volume.get("read_only"))
    raise AssertionError(f"nothing is mounted at {target}")


def container_port(mapping: str | int | dict[str, Any]) -> int:
    if isinstance(mapping, dict):
        return int(mapping["target"])
    return int(str(mapping).split(":")[-1].split("/")[0])


def host_port(mapping: str | int | dict[str, Any]) -> int:
    if isinstance(mapping, dict):
        return int(mapping["published"])
    return int(str(mapping).split(":")[-2])


def shell_steps(service: dict[str, Any]) -> list[list[str]]:
    """The commands of a service's `sh -c "a && b > f"`, each as its words."""
    args = as_args(service["command"])
    script = args[args.index("-c") + 1] if args[:1] == ["sh"] else shlex.join(args)
    return [shlex.split(step) for step in script.split("&&")]


def step(service: dict[str, Any], *words: str) -> list[str]:
    found = [s for s in shell_steps(service) if " ".join(words) in " ".join(s)]
    assert len(found) == 1, f"no single step runs {' '.join(words)}: {shell_steps(service)}"
    return found[0]


def volume_at(service: dict[str, Any], path: str) -> tuple[str, str]:
    """(source, mount point) of the mount that holds `path` in the service."""
    holding = [t for t in mounts(service) if path == t or path.startswith(t.rstrip("/") + "/")]
    assert holding, f"{path} is on no volume"
    target = max(holding, key=len)
    return mounts(service)[target], target
