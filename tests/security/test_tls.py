"""TLS from certificate files: the read API over HTTPS, and NATS connections that verify
the server, with a certificate authority made in the test."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import nats
import orjson
import pytest
import trustme

from infra.bus.embedded import EmbeddedNats, free_port
from infra.bus.tls import client_context
from infra.settings import Settings
from services.app import Orchestrator


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1", "localhost")
    ca, cert, key = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    authority.cert_pem.write_to_path(str(ca))
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return Pki(ca, cert, key)


@pytest.fixture
def tls_nats(tmp_path: Path, pki: Pki) -> Iterator[EmbeddedNats]:
    block = f'tls {{\n  cert_file: "{pki.cert}"\n  key_file: "{pki.key}"\n}}\n'
    server = EmbeddedNats(tmp_path / "nats", port=free_port(), sync="default",
                          auth_config=block)
    server.start()
    yield server
    server.stop()


async def test_the_read_api_serves_https_and_nats_is_reached_over_tls(tmp_path, pki,
                                                                      tls_nats):
    url = f"tls://127.0.0.1:{tls_nats.port}"
    orch = Orchestrator(Settings(
        nats_url=url, data_dir=tmp_path / "data", http_port=0, auth="off",
        tls_cert=pki.cert, tls_key=pki.key, nats_tls_ca=pki.ca, lease_ttl=1.0))
    await orch.start()
    try:
        trusting = ssl.create_default_context(cafile=str(pki.ca))
        https = f"https://127.0.0.1:{orch.http_port}/healthz"
        async with aiohttp.ClientSession() as session:
            async with session.get(https, ssl=trusting) as reply:
                assert reply.status == 200
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with session.get(https):  # the system's CAs do not know ours
                    pass

        client = await nats.connect(url, tls=client_context(pki.ca))
        msg = await client.request(orch.names.client_command("task.submit", "tls"),
                                   orjson.dumps({"kind": "echo"}), timeout=5)
        assert orjson.loads(msg.data)["ok"]
        await client.close()
        with pytest.raises((ssl.SSLError, nats.errors.Error, OSError)):
            await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0,
                               connect_timeout=3, tls=ssl.create_default_context())
    finally:
        await orch.stop()
