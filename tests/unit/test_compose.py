"""docker-compose.yml and the Dockerfile, checked by structure (no Docker engine needed):
each NATS node and each orchestrator as a service; the shape they make together (the
cluster, one deployment, the load balancer, the keys) is in test_compose_deployment.py."""

from __future__ import annotations

import re
import shlex
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from infra import settings as settings_module
from tests.compose_files import (
    COMPOSE_FILE,
    MIN_NATS,
    NATS_CLIENT_PORT,
    NODES,
    ORCHESTRATORS,
    ROOT,
    as_args,
    container_port,
    environment_of,
    flag_value,
    known_variables,
    load_compose,
    mounts,
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module", params=NODES)
def nats(request: pytest.FixtureRequest, compose: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"][request.param]
    return service


@pytest.fixture(scope="module", params=ORCHESTRATORS)
def orchestrator(request: pytest.FixtureRequest, compose: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"][request.param]
    return service


@pytest.fixture(scope="module")
def environment(orchestrator: dict[str, Any]) -> dict[str, str]:
    return environment_of(orchestrator)



class TestServices:
    def test_declares_the_shape_of_the_deployment_guide(self, compose: dict[str, Any]) -> None:
        assert {*NODES, *ORCHESTRATORS, "auth-init", "lb"} == set(compose["services"])

    def test_every_named_volume_is_declared(self, compose: dict[str, Any]) -> None:
        declared = set(compose.get("volumes") or {})
        for service in compose["services"].values():
            named = {s for s in mounts(service).values() if not s.startswith((".", "/", "~"))}
            assert named <= declared, named - declared


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

    def test_publishes_its_client_port_on_loopback_only(self, nats: dict[str, Any]) -> None:
        for mapping in nats.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), mapping
            assert container_port(mapping) == NATS_CLIENT_PORT


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

    def test_connects_to_every_nats_node_by_name(self, environment: dict[str, str]) -> None:
        urls = [urlsplit(url) for url in environment[settings_module.NATS_URL].split(",")]
        assert all(url.scheme == "nats" for url in urls)
        assert {url.hostname for url in urls} == set(NODES)
        assert all((url.port or NATS_CLIENT_PORT) == NATS_CLIENT_PORT for url in urls)

    def test_replicates_the_streams_three_times(self, environment: dict[str, str]) -> None:
        assert settings_module.from_env(environment).stream_replicas == 3

    def test_waits_for_every_healthy_nats_node(
        self, orchestrator: dict[str, Any], compose: dict[str, Any]
    ) -> None:
        for node in NODES:
            assert orchestrator["depends_on"][node]["condition"] == "service_healthy"
            assert "healthcheck" in compose["services"][node]

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
