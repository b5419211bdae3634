"""docker-compose.yml and the Dockerfile, checked by structure (no Docker engine needed)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from infra import settings as settings_module

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
MIN_NATS = (2, 11)  # the Nats-Expected-Last-Subject-Sequence-Subject header (DESIGN §2)
NATS_CLIENT_PORT = 4222


def known_variables() -> set[str]:
    """Every ORCH_* variable infra/settings.py defines as a module-level constant."""
    return {
        value for name, value in vars(settings_module).items()
        if name.isupper() and isinstance(value, str) and value.startswith("ORCH_")
    }


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def nats(compose: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"]["nats"]
    return service


@pytest.fixture(scope="module")
def orchestrator(compose: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"]["orchestrator"]
    return service


@pytest.fixture(scope="module")
def environment(orchestrator: dict[str, Any]) -> dict[str, str]:
    """The orchestrator's environment, whether written as a mapping or a list."""
    raw = orchestrator.get("environment", {})
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


def container_port(mapping: str | int | dict[str, Any]) -> int:
    if isinstance(mapping, dict):
        return int(mapping["target"])
    return int(str(mapping).split(":")[-1].split("/")[0])


class TestServices:
    def test_declares_nats_and_the_orchestrator(self, compose: dict[str, Any]) -> None:
        assert {"nats", "orchestrator"} <= set(compose["services"])


class TestNats:
    def test_image_is_nats_2_11_or_newer(self, nats: dict[str, Any]) -> None:
        match = re.fullmatch(r"nats:(\d+)\.(\d+)(?:\.\d+)?(?:-[a-z0-9.]+)?", nats["image"])
        assert match, f"nats image should be a versioned nats tag, got {nats['image']!r}"
        major, minor = int(match[1]), int(match[2])
        assert major == 2 and (major, minor) >= MIN_NATS, nats["image"]

    def test_enables_jetstream(self, nats: dict[str, Any]) -> None:
        args = as_args(nats["command"])
        assert "-js" in args or "--jetstream" in args

    def test_stores_jetstream_on_a_declared_named_volume(
        self, compose: dict[str, Any], nats: dict[str, Any]
    ) -> None:
        store_dir = flag_value(as_args(nats["command"]), "-sd", "--store_dir")
        assert store_dir, "nats needs a JetStream store dir (-sd)"
        source = mounts(nats).get(store_dir.rstrip("/"))
        assert source, f"nothing is mounted at the store dir {store_dir}"
        assert not source.startswith((".", "/", "~")), f"{source} is a bind mount"
        assert source in (compose.get("volumes") or {}), f"volume {source} is not declared"

    def test_syncs_every_write_to_disk(self, nats: dict[str, Any]) -> None:
        # sync_interval has no flag: it comes from a config file mounted into the container.
        config = flag_value(as_args(nats["command"]), "-c", "--config")
        assert config, "nats needs a config file for sync_interval: always"
        source = mounts(nats).get(config)
        assert source, f"nothing is mounted at {config}"
        host_file = (COMPOSE_FILE.parent / source).resolve()
        assert host_file.is_file(), f"{source} does not exist"
        assert re.search(r"^\s*sync_interval\s*:\s*always\s*$", host_file.read_text(), re.M)

    def test_healthcheck_probes_jetstream_on_the_monitoring_port(
        self, nats: dict[str, Any]
    ) -> None:
        monitor_port = flag_value(as_args(nats["command"]), "-m", "--http_port")
        assert monitor_port, "nats needs its monitoring endpoint (-m) for the healthcheck"
        test = nats["healthcheck"]["test"]
        probe = test if isinstance(test, str) else " ".join(test)
        assert f":{monitor_port}/healthz" in probe
        assert "js-enabled-only=true" in probe


class TestOrchestrator:
    def test_builds_from_the_dockerfile_in_the_repository(
        self, orchestrator: dict[str, Any]
    ) -> None:
        build = orchestrator["build"]
        if isinstance(build, str):
            build = {"context": build}
        context = (COMPOSE_FILE.parent / build["context"]).resolve()
        assert (context / build.get("dockerfile", "Dockerfile")).is_file()

    def test_sets_only_known_settings(self, environment: dict[str, str]) -> None:
        variables = {name for name in environment if name.startswith("ORCH_")}
        assert variables, "the orchestrator is configured through ORCH_* variables"
        assert variables <= known_variables(), variables - known_variables()

    def test_settings_are_valid(self, environment: dict[str, str]) -> None:
        settings = settings_module.from_env(environment)
        assert settings.http_host == "0.0.0.0"

    def test_sets_the_failure_detector_timings(self, environment: dict[str, str]) -> None:
        wanted = {
            settings_module.HEARTBEAT_INTERVAL,
            settings_module.SUSPECT_AFTER,
            settings_module.DEAD_AFTER,
        }
        assert wanted <= set(environment)

    def test_connects_to_the_nats_service_by_name(
        self, compose: dict[str, Any], environment: dict[str, str]
    ) -> None:
        url = urlsplit(environment[settings_module.NATS_URL])
        assert url.scheme == "nats"
        assert url.hostname == "nats" and url.hostname in compose["services"]
        assert (url.port or NATS_CLIENT_PORT) == NATS_CLIENT_PORT

    def test_waits_for_a_healthy_nats(
        self, orchestrator: dict[str, Any], nats: dict[str, Any]
    ) -> None:
        assert orchestrator["depends_on"]["nats"]["condition"] == "service_healthy"
        assert "healthcheck" in nats

    def test_publishes_the_read_api_port(
        self, orchestrator: dict[str, Any], environment: dict[str, str]
    ) -> None:
        port = int(environment[settings_module.HTTP_PORT])
        assert port in [container_port(p) for p in orchestrator["ports"]]

    def test_restarts_unless_stopped(self, orchestrator: dict[str, Any]) -> None:
        assert orchestrator["restart"] == "unless-stopped"


# --- the Dockerfile ------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def last(instruction: str) -> str:
    values = [rest for word, rest in dockerfile_instructions() if word == instruction]
    assert values, f"the Dockerfile has no {instruction}"
    return values[-1]


def exec_or_shell(arguments: str) -> list[str]:
    arguments = arguments.strip()
    if arguments.startswith("["):
        loaded = yaml.safe_load(arguments)  # a JSON array is YAML too
        return [str(a) for a in loaded]
    return shlex.split(arguments)


class TestDockerfile:
    def test_is_based_on_python_3_11_slim(self) -> None:
        assert dockerfile_instructions()[0] == ("FROM", "python:3.11-slim")

    def test_runs_orchestrator_up(self) -> None:
        words = [w for word, rest in dockerfile_instructions()
                 if word in ("CMD", "ENTRYPOINT") for w in exec_or_shell(rest)]
        assert "orchestrator" in words
        assert words[words.index("orchestrator") + 1] == "up"

    def test_exposes_the_port_compose_publishes(self, environment: dict[str, str]) -> None:
        exposed = {int(p.split("/")[0]) for p in last("EXPOSE").split()}
        assert int(environment[settings_module.HTTP_PORT]) in exposed

    def test_runs_as_a_non_root_user(self) -> None:
        user = last("USER").split(":")[0]
        assert user not in ("root", "0")

    def test_binds_the_read_api_beyond_loopback(self) -> None:
        env = " ".join(rest for word, rest in dockerfile_instructions() if word == "ENV")
        assert f"{settings_module.HTTP_HOST}=0.0.0.0" in env
        variables = set(re.findall(r"\b(ORCH_[A-Z_]+)=", env))
        assert variables <= known_variables(), variables - known_variables()

    def test_checks_health_on_healthz(self) -> None:
        healthcheck = last("HEALTHCHECK")
        assert "urllib" in healthcheck
        assert "http://127.0.0.1:8080/healthz" in healthcheck


class TestDockerignore:
    @pytest.mark.parametrize("pattern", [".venv", ".git", ".orchestrator", ".mypy_cache",
                                         ".pytest_cache", ".ruff_cache"])
    def test_excludes_local_state(self, pattern: str) -> None:
        lines = (ROOT / ".dockerignore").read_text().splitlines()
        assert pattern in [line.strip() for line in lines]


class TestAuth:
    """Compose runs with auth on: keys made once, NATS trusting the orchestrator's
    auth callout, and no seed ever mounted into the NATS container."""

    def test_the_orchestrator_runs_with_auth_on_and_keeps_its_keys(
            self, environment: dict[str, str], orchestrator: dict[str, Any]) -> None:
        assert environment.get("ORCH_AUTH", "on") == "on"
        assert mounts(orchestrator)[environment["ORCH_DATA_DIR"]] == "orchestrator-data"

    def test_auth_init_writes_the_server_block_before_either_starts(
            self, compose: dict[str, Any], nats: dict[str, Any],
            orchestrator: dict[str, Any]) -> None:
        init = compose["services"]["auth-init"]
        command = " ".join(as_args(init["command"]))
        assert "orchestrator auth server-config" in command
        for service in (nats, orchestrator):
            assert service["depends_on"]["auth-init"]["condition"] == \
                "service_completed_successfully"

    def test_nats_includes_the_block_and_sees_no_seed(self, nats: dict[str, Any],
                                                     compose: dict[str, Any]) -> None:
        config = (ROOT / "deploy" / "nats.conf").read_text()
        include = re.search(r'include\s+"([^"]+)"', config)
        assert include is not None
        auth_dir = str(Path("/etc/nats") / Path(include.group(1)).parent)
        assert mounts(nats)[auth_dir] == "nats-auth"
        assert "orchestrator-data" not in mounts(nats).values()
        init_mounts = mounts(compose["services"]["auth-init"])
        written = " ".join(as_args(compose["services"]["auth-init"]["command"]))
        target = written.rsplit(">", 1)[1].strip()
        assert init_mounts[str(Path(target).parent)] == "nats-auth"
        assert Path(target).name == Path(include.group(1)).name
