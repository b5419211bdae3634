"""A loopback TCP proxy for stall tests: a network path that can stop forwarding without
closing anything, as a half-open path does.

It runs in a process of its own (`python -m tests.stall_proxy LISTEN_PORT TARGET_PORT`).
`StallProxy.pause()` stops that process (SIGSTOP): every connection through it stays open,
bytes sent into it wait in the kernel's buffers, new connections wait in its listen
backlog, and nothing is forwarded or closed. `resume()` (SIGCONT) forwards what waited
and carries on, as a path that heals does.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from infra.bus.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 64 * 1024


class StallProxy:
    """127.0.0.1:<port> forwarded to 127.0.0.1:<target_port>."""

    def __init__(self, target_port: int, log_path: Path | None = None) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.log_path = log_path
        self.paused = False
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tests.stall_proxy", str(self.port),
                 str(self.target_port)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process.poll() is None, "stall proxy exited"
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.02)
        raise TimeoutError(f"stall proxy did not listen on {self.port}")

    def pause(self) -> None:
        """Stop forwarding; close nothing."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGCONT)
        self._process.terminate()
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _serve(listen_port: int, target_port: int) -> None:
    async def handle(client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, upstream_writer),
                             _pipe(upstream_reader, client_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


def main() -> None:
    listen_port, target_port = int(sys.argv[1]), int(sys.argv[2])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(listen_port, target_port))


if __name__ == "__main__":
    main()
