"""docker-compose.yml, its files in deploy/ and the Dockerfile, checked by structure (no
Docker engine needed): the shape docs/deployment.md describes, a 3-node NATS cluster with
the auth callout, 3 orchestrators sharing the deployment's keys, a load balancer."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from infra import settings as settings_module
from infra.auth.credentials import Keys, server_auth_config_for
from infra.bus.embedded import server_binary
from infra.names import Names

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module", params=NODES)
def nats(request: pytest.FixtureRequest, compose: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"][request.param]
    return service


@pytest.fixture(scope="module", params=ORCHESTRATORS)
def orchestrator(request: pytest.FixtureRequest, compose: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"][request.param]
    return service


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, whether written as a mapping or a list."""
    raw = service.get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


@pytest.fixture(scope="module")
def environment(orchestrator: dict[str, Any]) -> dict[str, str]:
    return environment_of(orchestrator)


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


def cluster_of(service: dict[str, Any]) -> tuple[str | None, str | None, str | None, list[str]]:
    """(server name, cluster name, cluster listen URL, route URLs) from its flags."""
    args = as_args(service["command"])
    routes = flag_value(args, "--routes") or ""
    return (flag_value(args, "-n", "--name", "--server_name"),
            flag_value(args, "--cluster_name"), flag_value(args, "--cluster"),
            [route.strip() for route in routes.split(",") if route.strip()])


class TestCluster:
    def test_three_nodes_each_routing_to_the_other_two(self, compose: dict[str, Any]) -> None:
        names, cluster_names = set(), set()
        for node in NODES:
            name, cluster_name, listen, routes = cluster_of(compose["services"][node])
            assert name == node, f"{node}: server name {name!r} (JetStream needs one each)"
            assert listen is not None, f"{node} listens for no routes (--cluster)"
            port = urlsplit(listen).port
            assert port, listen
            targets = {(urlsplit(r).hostname, urlsplit(r).port) for r in routes}
            assert targets == {(other, port) for other in NODES if other != node}, routes
            names.add(name)
            cluster_names.add(cluster_name)
        assert len(names) == 3
        assert len(cluster_names) == 1 and None not in cluster_names

    def test_each_node_has_a_store_of_its_own(self, compose: dict[str, Any]) -> None:
        stores = set()
        for node in NODES:
            service = compose["services"][node]
            store_dir = flag_value(as_args(service["command"]), "-sd", "--store_dir")
            assert store_dir is not None
            stores.add(mounts(service)[store_dir.rstrip("/")])
        assert len(stores) == 3

    def test_the_config_and_flags_parse(self, compose: dict[str, Any], tmp_path: Path) -> None:
        # nats-server -t with the node's own flags, the mounted config file, and an auth
        # block as auth-init writes it where the config includes it.
        service = compose["services"][NODES[0]]
        args = as_args(service["command"])
        config = flag_value(args, "-c", "--config")
        assert config is not None
        conf_dir = tmp_path / "etc"
        conf_dir.mkdir()
        conf = conf_dir / Path(config).name
        conf.write_text((ROOT / mounts(service)[config]).read_text())
        include = re.search(r'include\s+"([^"]+)"', conf.read_text())
        assert include is not None
        keys = Keys.of(tmp_path / "keys")
        keys.ensure()
        block = conf_dir / include.group(1)
        block.parent.mkdir(parents=True)
        block.write_text(server_auth_config_for(keys, Names("orch")))
        args[args.index(config)] = str(conf)
        checked = subprocess.run([server_binary(), *args, "-t"], capture_output=True,
                                 text=True, timeout=30)
        said = checked.stdout + checked.stderr
        assert checked.returncode == 0 and "is valid" in said, said
        assert "not defined" not in said, said  # an unknown flag only prints a usage


def test_the_guides_node_configuration_parses(tmp_path: Path) -> None:
    # docs/deployment.md shows a node's configuration as a file: nats-server -t on it,
    # with its store and the auth block it includes made here.
    guide = (ROOT / "docs" / "deployment.md").read_text()
    block = guide.split("Each node's configuration", 1)[1].split("```", 2)[1]
    include = re.search(r'include\s+"([^"]+)"', block)
    assert include is not None and "cluster {" in block and "routes:" in block
    keys = Keys.of(tmp_path / "keys")
    keys.ensure()
    (tmp_path / include.group(1)).write_text(server_auth_config_for(keys, Names("orch")))
    store = re.search(r"store_dir:\s*(\S+)", block)
    assert store is not None
    conf = tmp_path / "node.conf"
    conf.write_text(block.replace(store.group(1), str(tmp_path / "store")))
    checked = subprocess.run([server_binary(), "-c", str(conf), "-t"], capture_output=True,
                             text=True, timeout=30)
    said = checked.stdout + checked.stderr
    assert checked.returncode == 0 and "is valid" in said, said


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


class TestOneDeployment:
    """The three orchestrators are one deployment: the same settings and prefix, each
    with a data directory of its own."""

    def test_the_same_settings_but_the_per_machine_ones(self, compose: dict[str, Any]) -> None:
        shared = [{k: v for k, v in environment_of(compose["services"][o]).items()
                   if k not in PER_MACHINE} for o in ORCHESTRATORS]
        assert shared[0] == shared[1] == shared[2]
        prefixes = {environment_of(compose["services"][o]).get(
            settings_module.SUBJECT_PREFIX, "orch") for o in ORCHESTRATORS}
        assert len(prefixes) == 1

    def test_each_keeps_its_data_in_a_volume_of_its_own(self, compose: dict[str, Any]) -> None:
        volumes = set()
        for name in ORCHESTRATORS:
            service = compose["services"][name]
            data_dir = environment_of(service)[settings_module.DATA_DIR]
            volumes.add(mounts(service)[data_dir])
        assert len(volumes) == 3


# --- the load balancer ---------------------------------------------------------------

HAPROXY_IN_CONTAINER = "/usr/local/etc/haproxy/haproxy.cfg"


def haproxy_config(compose: dict[str, Any]) -> str:
    source = mounts(compose["services"]["lb"])[HAPROXY_IN_CONTAINER]
    return (COMPOSE_FILE.parent / source).read_text()


def haproxy_sections(text: str) -> dict[str, list[str]]:
    """'backend orchestrators' -> its lines, comments and blank lines left out."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not raw[0].isspace():
            current = sections.setdefault(line.strip(), [])
        else:
            current.append(line.strip())
    return sections


class TestLoadBalancer:
    def test_its_config_file_is_mounted_read_only(self, compose: dict[str, Any]) -> None:
        lb = compose["services"]["lb"]
        source = mounts(lb)[HAPROXY_IN_CONTAINER]
        assert (COMPOSE_FILE.parent / source).is_file()
        assert read_only(lb, HAPROXY_IN_CONTAINER)

    def test_its_servers_are_the_orchestrators_read_apis(self, compose: dict[str, Any]) -> None:
        sections = haproxy_sections(haproxy_config(compose))
        frontends = [name for name in sections if name.startswith("frontend ")]
        assert len(frontends) == 1
        backend = next(line.split()[1] for line in sections[frontends[0]]
                       if line.startswith("default_backend "))
        servers = {line.split()[2] for line in sections[f"backend {backend}"]
                   if line.startswith("server ")}
        wanted = set()
        for name in ORCHESTRATORS:
            port = environment_of(compose["services"][name])[settings_module.HTTP_PORT]
            wanted.add(f"{name}:{port}")
        assert servers == wanted

    def test_it_sends_requests_only_to_ready_orchestrators(
            self, compose: dict[str, Any]) -> None:
        sections = haproxy_sections(haproxy_config(compose))
        backend = next(lines for name, lines in sections.items() if name.startswith("backend "))
        assert "option httpchk" in backend
        assert "http-check send meth GET uri /readyz" in backend
        assert "http-check expect status 200" in backend
        checked = [line for line in backend if line.startswith(("server ", "default-server "))
                   and " check" in f" {line} "]
        assert checked, "no server is health checked"

    def test_it_waits_longer_than_a_blocking_query(self, compose: dict[str, Any]) -> None:
        from services.http.api import MAX_WAIT_S

        defaults = haproxy_sections(haproxy_config(compose))["defaults"]
        server_timeout = next(line.split()[2] for line in defaults
                              if line.startswith("timeout server "))
        assert float(server_timeout.rstrip("s")) > MAX_WAIT_S

    def test_publishes_the_read_api_port(self, compose: dict[str, Any]) -> None:
        text = haproxy_config(compose)
        bind = re.search(r"^\s*bind\s+\S*:(\d+)", text, re.M)
        assert bind is not None
        lb_ports = [container_port(p) for p in compose["services"]["lb"]["ports"]]
        assert int(bind.group(1)) in lb_ports
        assert 8080 in [host_port(p) for p in compose["services"]["lb"]["ports"]]

    def test_the_orchestrators_are_reached_through_it_only(
            self, compose: dict[str, Any]) -> None:
        for name in ORCHESTRATORS:
            assert not compose["services"][name].get("ports"), name


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


class TestAuth:
    """Compose runs with auth on: keys made once, NATS trusting the orchestrators' auth
    callout, every orchestrator holding the same keys, no seed mounted into NATS."""

    def test_the_orchestrators_run_with_auth_on(self, environment: dict[str, str]) -> None:
        assert environment.get("ORCH_AUTH", "on") == "on"

    def test_auth_init_runs_before_anything_else_starts(self, compose: dict[str, Any]) -> None:
        step(compose["services"]["auth-init"], "orchestrator", "auth", "server-config")
        for name in (*NODES, *ORCHESTRATORS):
            assert compose["services"][name]["depends_on"]["auth-init"]["condition"] == \
                "service_completed_successfully"

    def test_each_orchestrator_imports_the_bundle_auth_init_exports(
            self, compose: dict[str, Any], orchestrator: dict[str, Any],
            environment: dict[str, str]) -> None:
        init = compose["services"]["auth-init"]
        export = step(init, "orchestrator", "auth", "export")
        written = export[-1]
        assert flag_value(export, "--data-dir") == flag_value(
            step(init, "orchestrator", "auth", "server-config"), "--data-dir")
        keys_volume, _ = volume_at(init, written)

        steps = shell_steps(orchestrator)
        imported = step(orchestrator, "orchestrator", "auth", "import")
        assert steps.index(imported) == 0 and steps[-1][-2:] == ["orchestrator", "up"]
        assert "--force" not in imported  # identical keys kept; differing ones refused
        assert flag_value(imported, "--data-dir") in (None, environment["ORCH_DATA_DIR"])
        bundle = imported[-1]
        source, target = volume_at(orchestrator, bundle)
        assert source == keys_volume and read_only(orchestrator, target)
        assert Path(bundle).relative_to(target) == \
            Path(written).relative_to(volume_at(init, written)[1])
        data_volume, _ = volume_at(orchestrator, environment["ORCH_DATA_DIR"])
        assert data_volume != keys_volume

    def test_nats_includes_the_block_and_sees_no_seed(self, nats: dict[str, Any],
                                                     compose: dict[str, Any]) -> None:
        config = (ROOT / "deploy" / "nats.conf").read_text()
        include = re.search(r'include\s+"([^"]+)"', config)
        assert include is not None
        auth_dir = str(Path("/etc/nats") / Path(include.group(1)).parent)
        assert mounts(nats)[auth_dir] == "nats-auth"
        init = compose["services"]["auth-init"]
        seeds = {source for source, _ in [volume_at(init, "/var/lib/orchestrator")]}
        for name in ORCHESTRATORS:
            service = compose["services"][name]
            seeds.add(volume_at(service, environment_of(service)["ORCH_DATA_DIR"])[0])
        assert not seeds & set(mounts(nats).values())
        server_config = shell_steps(init)[0]
        assert server_config[-2] == ">"
        target = server_config[-1]
        assert volume_at(init, target)[0] == "nats-auth"
        assert Path(target).name == Path(include.group(1)).name
