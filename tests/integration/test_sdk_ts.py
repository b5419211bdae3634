"""The TypeScript SDK (sdk-ts/) against a real orchestrator and nats-server: its own
tests, run with Node's test runner (`npm test` in sdk-ts: tsc, then `node --test`). Each
of its test files starts `orchestrator up` from this virtual environment, with the
embedded nats-server of the wheel, on free ports: lifecycle, fencing, moved and
cancelled tasks, failover, SIGTERM, an orchestrator restart, enrollment and renewal with
auth on, forged identities, the client, and its README's example.

It needs Node.js and the packages pinned in sdk-ts/package-lock.json, which `make test`
installs (`make sdk-ts`: npm ci). Without them the test fails, saying so."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SDK_TS = ROOT / "sdk-ts"
TIMEOUT_S = 200  # the suite takes about 30 s; a loaded machine may take longer


@pytest.mark.timeout(TIMEOUT_S + 20)
def test_the_typescript_sdk_passes_its_tests() -> None:
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.fail("node and npm are not on PATH: the TypeScript SDK's tests need Node.js "
                    ">= 18; install them, then `make sdk-ts`", pytrace=False)
    if not (SDK_TS / "node_modules" / "@nats-io" / "transport-node").is_dir():
        pytest.fail(f"the packages are not installed in {SDK_TS}/node_modules: run "
                    "`make sdk-ts` (npm ci in sdk-ts; `make test` does it)", pytrace=False)
    orchestrator = Path(sys.prefix) / "bin" / "orchestrator"
    env = {**os.environ, "ORCH_BIN": str(orchestrator)}
    done = subprocess.run([npm, "test"], cwd=SDK_TS, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S, check=False)
    summary = [line for line in done.stdout.splitlines()
               if line.startswith(("# tests", "# pass", "# fail"))]
    assert done.returncode == 0, (f"npm test exited {done.returncode}\n{done.stdout[-20000:]}"
                                  f"\n{done.stderr[-5000:]}")
    assert "# fail 0" in summary, summary
