"""The embedded nats-server's files, as another local user or a flood of connections
would meet them: the store and the keys in directories of mode 0700, the server's log
mode 0600, and the log rotated within LOG_FILES files however many connections fail."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

from infra.auth.credentials import Keys
from infra.bus import embedded
from infra.bus.embedded import EmbeddedNats, free_port
from tests.support import eventually


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def refused_connect(port: int, name: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reader.readline()  # INFO
        writer.write(b'CONNECT {"verbose":false,"name":"' + name.encode() + b'"}\r\nPING\r\n')
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()


def test_the_store_keys_and_log_are_the_users_alone(tmp_path):
    data = tmp_path / "made" / "data"
    Keys.of(data).ensure()  # as `up` with auth on: the keys first, then the server
    server = EmbeddedNats(data / "nats", port=free_port(), sync="default")
    server.start()
    try:
        for directory in (tmp_path / "made", data, data / "auth", data / "nats",
                          data / "nats" / "jetstream"):
            assert mode(directory) == 0o700, directory
        for file in (data / "nats" / embedded.LOG_NAME, data / "nats" / "nats-server.conf",
                     data / "auth" / "issuer.nk"):
            assert mode(file) == 0o600, file
    finally:
        server.stop()


def test_files_an_earlier_version_left_open_are_narrowed(tmp_path):
    store = tmp_path / "nats"
    store.mkdir(mode=0o755)
    store.chmod(0o755)
    old_log = store / embedded.LOG_NAME
    old_log.write_text("[1] an earlier version's line\n")
    old_log.chmod(0o644)
    server = EmbeddedNats(store, port=free_port(), sync="default")
    server.start()
    try:
        assert mode(store) == 0o700
        assert mode(old_log) == 0o600
    finally:
        server.stop()


async def test_a_flood_of_refused_connections_rotates_the_log_within_its_files(
        tmp_path, monkeypatch):
    monkeypatch.setattr(embedded, "LOG_FILE_BYTES", 4096)
    monkeypatch.setattr(embedded, "LOG_FILES", 3)
    store = tmp_path / "nats"
    # Every client must hold the token; each refusal is a line of the server's log.
    server = EmbeddedNats(store, port=free_port(), sync="default",
                          auth_config='authorization { token: "not-guessed" }\n')
    await server.astart()
    try:
        slots = asyncio.Semaphore(16)

        async def one(n: int) -> None:
            async with slots:
                answer = await refused_connect(server.port, f"attacker-{n}")
            assert b"Authorization Violation" in answer

        await asyncio.gather(*(one(n) for n in range(400)))  # ~35 KB of log lines

        def logs() -> list[Path]:
            return sorted(store.glob(embedded.LOG_NAME + "*"))

        await eventually(lambda: len(logs()) == 3, what="the log rotated to its last file")
        files = logs()
        assert len(files) <= 3  # the current one and two rotated: the rest removed
        for file in files:
            assert mode(file) == 0o600, file
            assert file.stat().st_size <= 4096 + 200, file  # past the limit by one line
    finally:
        await server.astop()


def test_the_rotation_is_in_the_configuration(tmp_path):
    config = embedded.render_config(4222, tmp_path / "js", "default", "n",
                                    log_file=tmp_path / embedded.LOG_NAME)
    assert f"logfile_size_limit: {embedded.LOG_FILE_BYTES}" in config
    assert f"logfile_max_num: {embedded.LOG_FILES}" in config
