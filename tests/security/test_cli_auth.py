"""The CLI with auth on, run as a user would: `up` on the embedded server, the demo
agent enrolling itself, the security commands, and an external NATS."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from infra.auth.credentials import Keys, read_secret
from infra.bus.embedded import LOG_NAME, EmbeddedNats, free_port
from services.cli.main import EXIT_CANNOT_START, EXIT_REFUSED, EXIT_UNREACHABLE
from tests.support import eventually, get_json

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Up:
    process: asyncio.subprocess.Process
    data_dir: Path
    http_port: int
    nats_url: str
    lines: list[str]

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "HOME": str(self.data_dir.parent),
                "ORCH_DATA_DIR": str(self.data_dir), "ORCH_NATS_URL": self.nats_url, **extra}


async def cli(up: Up, *args: str, **env: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", *args, cwd=ROOT, env=up.env(**env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def _read_lines(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := await stream.readline():
        into.append(line.decode())


@pytest.fixture
async def up(tmp_path: Path) -> AsyncIterator[Up]:
    data_dir, http_port, nats_port = tmp_path / "data", free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", "up", "--data-dir", str(data_dir),
        "--http-port", str(http_port), "--embedded-nats-port", str(nats_port),
        "--heartbeat-interval", "0.2", "--suspect-after", "1", "--dead-after", "2",
        cwd=ROOT, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    assert process.stdout is not None
    reader = asyncio.create_task(_read_lines(process.stdout, lines))
    started = Up(process, data_dir, http_port, f"nats://127.0.0.1:{nats_port}", lines)
    try:
        await eventually(lambda: any("orchestrator ready" in line for line in lines),
                         timeout=60, what="up ready")
        yield started
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
        reader.cancel()


async def test_up_is_secure_by_default_and_says_where_the_credentials_are(up):
    output = "".join(up.lines)
    keys = Keys.of(up.data_dir)
    assert "auth=on" in output
    assert str(keys.operator) in output and str(keys.read_token) in output
    assert read_secret(keys.read_token) not in output  # the path, never the token
    status, _, _ = await get_json(f"http://127.0.0.1:{up.http_port}/v1/agents")
    assert status == 401


async def test_up_prints_a_shell_line_that_builds_the_dashboard_link(up):
    line = await eventually(lambda: next(x for x in up.lines if x.startswith("dashboard: ")),
                            what="the dashboard line")
    shell = await asyncio.create_subprocess_exec(
        "sh", "-c", line.removeprefix("dashboard: "), cwd=ROOT, stdout=subprocess.PIPE)
    out, _ = await shell.communicate()
    token = read_secret(Keys.of(up.data_dir).read_token)
    assert out.decode().strip() == f"http://127.0.0.1:{up.http_port}/ui/#token={token}"


async def test_the_demo_agent_enrolls_itself_and_runs_a_submitted_task(up):
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", "agent", "worker-1", cwd=ROOT, env=up.env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    assert agent.stdout is not None
    reader = asyncio.create_task(_read_lines(agent.stdout, lines))
    try:
        await eventually(lambda: any("registered" in line for line in lines), timeout=30,
                         what="the demo agent registered")
        assert Keys.of(up.data_dir).agent("worker-1").stat().st_mode & 0o777 == 0o600
        code, out, err = await cli(up, "submit", "echo", "--payload", '{"hi": 1}',
                                   "--task-id", "t1")
        assert code == 0, err
        assert orjson.loads(out)["ok"] is True
        token = read_secret(Keys.of(up.data_dir).read_token)

        async def completed() -> bool:
            status, _, body = await get_json(
                f"http://127.0.0.1:{up.http_port}/v1/tasks/t1", headers={
                    "Authorization": f"Bearer {token}"})
            return status == 200 and body["status"] == "completed"

        await eventually(completed, timeout=30, what="t1 completed by the demo agent")
    finally:
        agent.terminate()
        await agent.wait()
        reader.cancel()


async def test_enroll_revoke_token_and_identity_commands(up, tmp_path):
    # No NATS URL given: the command finds `up`'s embedded server by
    # ORCH_EMBEDDED_NATS_PORT, as in the shell that ran `ORCH_EMBEDDED_NATS_PORT=... make
    # run` (it went to 4222).
    port = up.nats_url.rsplit(":", 1)[1]
    code, out, err = await cli(up, "enroll", "w5", "--json", ORCH_NATS_URL="",
                               ORCH_EMBEDDED_NATS_PORT=port)
    assert code == 0, err
    enrolled = orjson.loads(out)
    assert enrolled["token"].startswith("oe1.w5.")
    code, out, _ = await cli(up, "enroll", "w5")
    assert code == 0 and out.strip().startswith("oe1.w5.")  # not enrolled yet: a new token

    code, out, err = await cli(up, "token", "create", "--scope", "read")
    assert code == 0, err
    status, _, _ = await get_json(f"http://127.0.0.1:{up.http_port}/v1/agents",
                                  headers={"Authorization": f"Bearer {out.strip()}"})
    assert status == 200

    seed_file = tmp_path / "alice.nk"
    code, out, err = await cli(up, "identity", "create", "alice", "--role", "submitter",
                               "--seed-file", str(seed_file))
    assert code == 0, err
    assert seed_file.stat().st_mode & 0o777 == 0o600
    code, out, err = await cli(up, "submit", "echo", ORCH_CREDENTIALS=str(seed_file))
    assert code == 0 and orjson.loads(out)["ok"], err
    # alice submits, but may not enroll: NATS refuses it, and the CLI says so at once.
    code, _, err = await cli(up, "enroll", "w6", ORCH_CREDENTIALS=str(seed_file))
    assert code == EXIT_REFUSED and err.splitlines() == [
        "orchestrator: alice may not send admin.enroll: NATS refused it (the identity's "
        "roles do not allow it)"]

    code, out, err = await cli(up, "revoke", "alice")
    assert code == 0 and "revoked alice" in out, err
    code, _, err = await cli(up, "submit", "echo", ORCH_CREDENTIALS=str(seed_file))
    assert code == EXIT_UNREACHABLE and "refused" in err
    assert "ORCH_CREDENTIALS" not in err  # they were given: no hint to give them


async def test_a_client_without_credentials_is_told_what_to_set(up, tmp_path):
    # Run from elsewhere than where `up` keeps its data: no operator key is found, the
    # command connects as nobody and is refused; the line says what to set.
    elsewhere = tmp_path / "elsewhere"
    code, out, err = await cli(up, "submit", "echo", ORCH_DATA_DIR=str(elsewhere))
    assert (code, out) == (EXIT_UNREACHABLE, "")
    assert err.splitlines() == [
        f"orchestrator: cannot connect to NATS at {up.nats_url}: credentials of 'anonymous' "
        f"refused: none were given and there is no {elsewhere}/auth/operator.nk; set "
        "ORCH_CREDENTIALS (--credentials) to a seed file, or ORCH_DATA_DIR (--data-dir) to "
        "the orchestrator's data directory"]


async def test_up_refuses_an_external_nats_that_lets_anyone_in(nats_server, tmp_path):
    data = tmp_path / "data"
    Keys.of(data).ensure()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", "up", "--nats-url", nats_server.url,
        "--data-dir", str(data), "--http-port", str(free_port()), "--log-level", "ERROR",
        cwd=ROOT, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == EXIT_CANNOT_START
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "without credentials" in lines[0] and "server-config" in lines[0]


async def test_an_external_nats_configured_from_server_config_works(tmp_path):
    data = tmp_path / "data"
    printer = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", "auth", "server-config", "--data-dir",
        str(data), cwd=ROOT, stdout=subprocess.PIPE)
    block = (await asyncio.wait_for(printer.communicate(), 60))[0].decode()
    assert printer.returncode == 0 and "auth_callout" in block
    server = EmbeddedNats(tmp_path / "nats", port=free_port(), sync="default",
                          auth_config=block)
    server.start()
    http_port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", "up", "--nats-url", server.url, "--data-dir",
        str(data), "--http-port", str(http_port), cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    assert process.stdout is not None
    reader = asyncio.create_task(_read_lines(process.stdout, lines))
    try:
        await eventually(lambda: any("orchestrator ready" in line for line in lines),
                         timeout=60, what="up against the external server")
        up = Up(process, data, http_port, server.url, lines)
        code, out, err = await cli(up, "enroll", "w7")
        assert code == 0 and out.startswith("oe1.w7."), err
        # Its checks of the server at start tried no client without credentials: the
        # server logged no refused connection (it did at every start: issue 33).
        server_log = (tmp_path / "nats" / LOG_NAME).read_text()
        assert "authentication error" not in server_log.lower(), server_log[-2000:]
    finally:
        process.terminate()
        await process.wait()
        reader.cancel()
        server.stop()
