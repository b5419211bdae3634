"""The backup user docs/deployment.md tells a platform team to add to the block `auth
server-config` prints: with exactly the permissions written there, it can snapshot the
events stream through JetStream's snapshot API and restore it (what `nats stream backup`
and `nats stream restore` do; the `nats` CLI itself is not run here)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import orjson
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from infra.auth.credentials import Keys, server_auth_config_for
from infra.auth.keys import Role, new_seed, public_key
from infra.bus.embedded import EmbeddedNats, free_port
from infra.names import Names

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "deployment.md"
EVENTS = 200
CHUNK = 1024


def documented_user(public: str) -> str:
    """The guide's backup user block, with `public` as its key."""
    line = next(line for line in GUIDE.read_text().splitlines()
                if line.startswith('{ nkey: "U') and "backup" in line)
    return re.sub(r'nkey: "[^"]*"', f'nkey: "{public}"', line)


def inbox_prefix() -> str:
    found = re.search(r"--inbox-prefix (\S+)`", GUIDE.read_text())
    assert found is not None, "the guide names the backup user's inbox prefix"
    return found.group(1)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedNats, Keys, str]]:
    keys = Keys.of(tmp_path / "data")
    keys.ensure()
    seed = new_seed(Role.USER)
    block = server_auth_config_for(keys, Names("orch"))
    # Added as the guide says: into the account's users, and its key into auth_users.
    block = block.replace("    ]\n", f"      {documented_user(public_key(seed))}\n    ]\n", 1)
    block = block.replace("auth_users: [ ", f'auth_users: [ "{public_key(seed)}", ')
    started = EmbeddedNats(tmp_path / "nats", port=free_port(), sync="default",
                           auth_config=block)
    started.start()
    try:
        yield started, keys, seed
    finally:
        started.stop()


async def api(nc: Client, subject: str, body: dict[str, object] | None = None) -> dict:
    reply = await nc.request(subject, orjson.dumps(body or {}), timeout=5)
    answer: dict = orjson.loads(reply.data)
    assert "error" not in answer, answer
    return answer


async def snapshot(nc: Client, stream: str) -> list[bytes]:
    chunks: list[bytes] = []
    finished = asyncio.get_running_loop().create_future()

    async def on_chunk(msg: Msg) -> None:
        if not msg.data:  # the end
            finished.set_result(None)
            return
        chunks.append(msg.data)
        if msg.reply:
            await nc.publish(msg.reply, b"")  # flow control: the next window

    deliver = f"{inbox_prefix()}.snapshot"
    subscription = await nc.subscribe(deliver, cb=on_chunk)
    await api(nc, f"$JS.API.STREAM.SNAPSHOT.{stream}",
              {"deliver_subject": deliver, "chunk_size": CHUNK})
    await asyncio.wait_for(finished, 30)
    await subscription.unsubscribe()
    return chunks


async def restore(nc: Client, stream: str, chunks: list[bytes]) -> None:
    started = await api(nc, f"$JS.API.STREAM.RESTORE.{stream}", {
        "config": {"name": stream}, "state": {}})
    for chunk in chunks:
        await nc.request(started["deliver_subject"], chunk, timeout=5)
    done = await nc.request(started["deliver_subject"], b"", timeout=30)
    assert "error" not in orjson.loads(done.data), done.data


async def test_the_documented_backup_user_backs_up_and_restores_the_log(server):
    nats_server, keys, seed = server
    log = await nats.connect(nats_server.url, nkeys_seed_str=keys.orchestrator_seed(),
                             inbox_prefix="_ORCH_LOG")
    backup = await nats.connect(nats_server.url, nkeys_seed_str=seed,
                                inbox_prefix=inbox_prefix())
    try:
        js = log.jetstream()
        await js.add_stream(name="ORCH_EVENTS", subjects=["orch.evt.>"])
        for i in range(EVENTS):
            await js.publish(f"orch.evt.task.t{i}.Submitted", b"x" * 100)

        chunks = await snapshot(backup, "ORCH_EVENTS")
        assert chunks
        await api(backup, "$JS.API.STREAM.DELETE.ORCH_EVENTS")  # lost, say
        await restore(backup, "ORCH_EVENTS", chunks)
        info = await api(backup, "$JS.API.STREAM.INFO.ORCH_EVENTS")
        assert info["state"]["messages"] == EVENTS
        assert info["state"]["last_seq"] == EVENTS
    finally:
        await backup.close()
        await log.close()
