"""A throw-away PostgreSQL server for the eventsourcing_peers benchmark, when this machine
has one installed (bench/setup.sh installs Debian's) and can run it as `postgres`."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

from infra.bus.embedded import free_port


def unavailable() -> str | None:
    """Why a PostgreSQL server cannot be started here, or None if it can."""
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return "PostgreSQL is not installed (make bench installs Debian's postgresql)"
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        return "starting PostgreSQL needs root (to run it as the postgres user)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed"
    return None


@contextlib.contextmanager
def postgres_server() -> Iterator[dict[str, str]]:
    """Start a server on a free port with a temporary data directory; yields the
    POSTGRES_* settings eventsourcing.postgres reads."""
    bin_dir = os.path.dirname(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1])
    data = tempfile.mkdtemp(prefix="orch-bench-pg-")
    shutil.chown(data, "postgres", "postgres")
    port = free_port()

    def as_postgres(*args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    as_postgres(f"{bin_dir}/initdb", "-D", data, "-A", "trust", "-U", "postgres")
    as_postgres(f"{bin_dir}/pg_ctl", "-D", data, "-w", "-o",
                f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start")
    try:
        as_postgres(f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U",
                    "postgres", "eventsourcing")
        yield {"POSTGRES_DBNAME": "eventsourcing", "POSTGRES_HOST": "127.0.0.1",
               "POSTGRES_PORT": str(port), "POSTGRES_USER": "postgres",
               "POSTGRES_PASSWORD": ""}
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            as_postgres(f"{bin_dir}/pg_ctl", "-D", data, "-w", "-m", "fast", "stop")
        shutil.rmtree(data, ignore_errors=True)
