"""The shape docker-compose.yml runs, as docs/deployment.md describes it, checked by
structure (no Docker engine needed): a 3-node NATS cluster (its configuration parsed by
nats-server -t), 3 orchestrators of one deployment sharing its keys through the bundle,
and a load balancer whose servers are their read APIs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from infra import settings as settings_module
from infra.auth.credentials import Keys, server_auth_config_for
from infra.bus.embedded import server_binary
from infra.names import Names
from tests.compose_files import (
    COMPOSE_FILE,
    NODES,
    ORCHESTRATORS,
    PER_MACHINE,
    ROOT,
    as_args,
    container_port,
    environment_of,
    flag_value,
    host_port,
    load_compose,
    mounts,
    read_only,
    shell_steps,
    step,
    volume_at,
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
