"""Several orchestrators of one deployment, set up as docs/deployment.md says: the first
makes the keys (`auth server-config`), every other takes them whole (`auth export` there,
`auth import` here), all run against one nats-server with the auth callout. And what a
partial copy of the keys gets: one line naming what is missing, exit 3."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.auth.credentials import Keys, read_secret, write_secret
from infra.auth.keys import Role, new_seed
from infra.bus.embedded import EmbeddedNats, free_port
from services.cli.main import EXIT_CANNOT_START, EXIT_REFUSED
from tests.support import eventually, get_json

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 60


@dataclass
class Deployment:
    tmp: Path
    server: EmbeddedNats
    first: Path  # the data directory whose keys the server trusts

    def env(self, data_dir: Path) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "HOME": str(self.tmp), "ORCH_DATA_DIR": str(data_dir),
                "ORCH_NATS_URL": self.server.url}


async def run(env: dict[str, str], *args: str, stdin: bytes = b"",
              **extra: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", *args, cwd=ROOT, env={**env, **extra},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(stdin), TIMEOUT_S)
    return process.returncode or 0, out.decode(), err.decode()


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    first = tmp_path / "a"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    code, block, err = await run(env, "auth", "server-config", "--data-dir", str(first))
    assert code == 0 and "auth_callout" in block, err
    server = EmbeddedNats(tmp_path / "nats", port=free_port(), sync="default",
                          auth_config=block)
    server.start()
    try:
        yield Deployment(tmp_path, server, first)
    finally:
        server.stop()


@dataclass
class Up:
    data_dir: Path
    http_port: int
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def output(self) -> str:
        return self.log.read_text()

    def ready(self) -> bool:
        return "orchestrator ready" in self.output()

    async def leader(self, token: str) -> bool | None:
        """Whether it holds the lease; None while it does not answer."""
        try:
            status, _, body = await get_json(self.url("/v1/stats"), timeout=2, headers={
                "Authorization": f"Bearer {token}"})
        except OSError:
            return None
        return bool(body["leader"]) if status == 200 else None


@pytest.fixture
def ups() -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:
        if up.process.poll() is None:
            up.process.terminate()
            up.process.wait(30)


def start_up(deployment: Deployment, data_dir: Path, started: list[Up]) -> Up:
    http_port = free_port()
    log = deployment.tmp / f"{data_dir.name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "up", "--http-port", str(http_port),
             "--lease-ttl", "2"],
            cwd=ROOT, env=deployment.env(data_dir), stdout=out, stderr=subprocess.STDOUT)
    up = Up(data_dir, http_port, process, log)
    started.append(up)
    return up


async def test_up_with_only_the_two_keys_the_server_names_says_what_is_missing(deployment):
    # Found in issue 33: copying issuer.nk and orchestrator.nk (the keys the server's
    # block names) made `up` crash on operator.nk (exit 1, a FileNotFoundError).
    second = deployment.tmp / "b"
    (second / "auth").mkdir(parents=True)
    for name in ("issuer.nk", "orchestrator.nk"):
        shutil.copy(deployment.first / "auth" / name, second / "auth" / name)
    code, _, err = await run(deployment.env(second), "up", "--http-port", str(free_port()),
                             "--log-level", "ERROR")
    lines = err.strip().splitlines()
    assert code == EXIT_CANNOT_START, err
    assert len(lines) == 1, err
    assert "operator.nk" in lines[0] and "auth import" in lines[0]
    assert "Traceback" not in err


async def test_server_config_refuses_a_partial_copy_and_makes_no_key(deployment):
    second = deployment.tmp / "b"
    (second / "auth").mkdir(parents=True)
    for name in ("issuer.nk", "orchestrator.nk"):
        shutil.copy(deployment.first / "auth" / name, second / "auth" / name)
    code, out, err = await run(deployment.env(second), "auth", "server-config",
                               "--data-dir", str(second))
    assert (code, out) == (EXIT_REFUSED, "")
    assert "keys_incomplete" in err and "operator.nk" in err and "auth import" in err
    assert not Keys.of(second).operator.exists()


async def test_an_orchestrator_set_up_by_import_serves_and_one_of_them_leads(
        deployment, ups):
    second, bundle = deployment.tmp / "b", deployment.tmp / "bundle.json"
    code, _, err = await run(deployment.env(deployment.first), "auth", "export", str(bundle))
    assert code == 0, err
    assert bundle.stat().st_mode & 0o777 == 0o600
    seeds = [read_secret(deployment.first / "auth" / name)
             for name in ("issuer.nk", "orchestrator.nk", "operator.nk")]
    code, out, err = await run(deployment.env(second), "auth", "import", str(bundle))
    assert code == 0, err
    assert not any(seed in out + err for seed in seeds)  # never a seed on the terminal
    code, out, err = await run(deployment.env(second), "auth", "import", str(bundle))
    assert code == 0 and "unchanged" in out, err  # again: nothing to do

    a = start_up(deployment, deployment.first, ups)
    b = start_up(deployment, second, ups)
    for up in (a, b):
        await eventually(up.ready, timeout=TIMEOUT_S, what=f"{up.data_dir.name} ready")

    # B's CLI, with B's data directory alone, is answered (by whichever orchestrator).
    code, out, err = await run(deployment.env(second), "enroll", "w1")
    assert code == 0 and out.startswith("oe1.w1."), err
    # Each made its own read token; both are in the one log, so each works on both.
    tokens = [read_secret(Keys.of(up.data_dir).read_token) for up in (a, b)]

    async def one_leader() -> bool:
        leaders = [await up.leader(token) for up in (a, b) for token in tokens]
        return None not in leaders and leaders in ([True, True, False, False],
                                                   [False, False, True, True])

    await eventually(one_leader, timeout=TIMEOUT_S, what="exactly one leader, both tokens")
    leader, standby = (a, b) if await a.leader(tokens[0]) else (b, a)
    leader.process.terminate()
    leader.process.wait(30)

    async def standby_leads() -> bool:
        return await standby.leader(tokens[0]) is True

    await eventually(standby_leads, timeout=TIMEOUT_S, what="the standby takes the lease")
    for up in (a, b):
        assert "another key than" not in up.output()


async def test_an_operator_key_other_than_the_registered_one_is_warned_of(deployment, ups):
    # The other two keys right (the server admits it), operator.nk its own: the CLI
    # there would be refused, and `up` says so rather than leave it to the first command.
    second = deployment.tmp / "b"
    for name in ("issuer.nk", "orchestrator.nk"):
        (second / "auth").mkdir(parents=True, exist_ok=True)
        shutil.copy(deployment.first / "auth" / name, second / "auth" / name)
    write_secret(Keys.of(second).operator, new_seed(Role.USER) + "\n")
    a = start_up(deployment, deployment.first, ups)
    await eventually(a.ready, timeout=TIMEOUT_S, what="a ready")
    b = start_up(deployment, second, ups)
    await eventually(b.ready, timeout=TIMEOUT_S, what="b ready")
    assert "another key than" not in a.output()
    warned = [line for line in b.output().splitlines() if "another key than" in line]
    assert len(warned) == 1 and "auth import" in warned[0]
    assert read_secret(Keys.of(second).operator) not in b.output()


async def test_the_deployment_keys_rotate_as_the_guide_says(deployment, ups):
    # docs/deployment.md, "Keys and their rotation": new keys and block from
    # server-config in a new directory, the old operator.nk copied over the new one,
    # orchestrators stopped, NATS restarted on the block, the bundle imported with --force.
    first, new = deployment.first, deployment.tmp / "new"
    a = start_up(deployment, first, ups)
    await eventually(a.ready, timeout=TIMEOUT_S, what="a ready")
    alice = deployment.tmp / "alice.nk"
    code, _, err = await run(deployment.env(first), "identity", "create", "alice", "--role",
                             "submitter", "--seed-file", str(alice))
    assert code == 0, err
    old_issuer = read_secret(Keys.of(first).issuer)
    a.process.terminate()
    a.process.wait(30)

    code, block, err = await run(deployment.env(new), "auth", "server-config",
                                 "--data-dir", str(new))
    assert code == 0, err
    shutil.copy(Keys.of(first).operator, Keys.of(new).operator)
    # A restart, not a reload: nats-server 2.15 refuses to reload a changed auth_callout
    # ("config reload not supported for AuthCallout").
    deployment.server.stop()
    deployment.server.auth_config = block
    deployment.server.start()
    bundle = deployment.tmp / "keys.json"
    assert (await run(deployment.env(new), "auth", "export", "--data-dir", str(new),
                      str(bundle)))[0] == 0
    code, out, err = await run(deployment.env(first), "auth", "import", "--force", str(bundle))
    assert code == 0 and "replaced: issuer.nk, orchestrator.nk" in out, err
    assert read_secret(Keys.of(first).issuer) != old_issuer

    a = start_up(deployment, first, ups)
    await eventually(a.ready, timeout=TIMEOUT_S, what="a ready on the new keys")
    code, out, err = await run(deployment.env(first), "enroll", "w2")  # operator: kept
    assert code == 0 and out.startswith("oe1.w2."), err
    code, out, err = await run(deployment.env(first), "submit", "echo",
                               ORCH_CREDENTIALS=str(alice))
    assert code == 0, err  # an identity of before, admitted by the new issuer
