"""The agent SDK as a distribution of its own: its wheel, built from sdk/pyproject.toml,
installed into a fresh virtual environment that holds nothing else but its declared
dependencies, imports none of the server's code there, and runs an agent against an
orchestrator from there.

Offline: the wheel is built without build isolation (setuptools and wheel are dev
dependencies), and the fresh environment gets the dependencies by linking the installed
distributions of this one (package and dist-info alike), so that pip, installing the
wheel with `--no-index`, sees them as installed and checks the wheel's requirements.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import eventually, request, subject

ROOT = Path(__file__).resolve().parents[2]
SERVER_PACKAGES = ("domain", "infra", "projections", "services", "bench", "tests")
SDK_DEPENDENCIES = {"nats-py", "nkeys", "orjson"}


def run(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def build_wheel(into: Path) -> Path:
    """sdk/'s wheel, built from a copy (a build leaves build/ and egg-info behind)."""
    source = into / "src" / "sdk"
    shutil.copytree(ROOT / "sdk", source, ignore=shutil.ignore_patterns(
        "__pycache__", "build", "*.egg-info", "dist"))
    offline = importlib.util.find_spec("setuptools") and importlib.util.find_spec("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
        *(["--no-build-isolation"] if offline else []), source, "-w", into / "dist")
    [wheel] = (into / "dist").glob("orchestrator_agent_sdk-*.whl")
    return wheel


def requirements_of(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        headers = Parser().parsestr(archive.read(metadata).decode())
    return [Requirement(r) for r in headers.get_all("Requires-Dist") or []]


def closure(requirements: list[Requirement]) -> list[importlib.metadata.Distribution]:
    """The installed distributions these requirements need, and theirs, and so on."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found[name] = importlib.metadata.distribution(requirement.name)
        todo += [r for r in map(Requirement, found[name].requires or [])
                 if r.marker is None or r.marker.evaluate({"extra": ""})]
    return list(found.values())


def link_into(site_packages: Path, dist: importlib.metadata.Distribution) -> None:
    """Make an installed distribution part of another environment, files and metadata."""
    home = Path(str(dist.locate_file("")))
    tops = {Path(f).parts[0] for f in dist.files or []} - {"..", "__pycache__"}
    for top in tops:
        target = site_packages / top
        if not target.exists():
            target.symlink_to(home / top)


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a new virtual environment with the SDK's wheel installed."""
    work = tmp_path_factory.mktemp("standalone")
    wheel = build_wheel(work)
    run(sys.executable, "-m", "venv", "--without-pip", work / "venv")
    python = work / "venv" / "bin" / "python"
    site_packages = Path(run(python, "-I", "-c",
                             "import sysconfig; print(sysconfig.get_path('purelib'))").strip())
    for dist in closure(requirements_of(wheel)):
        link_into(site_packages, dist)
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--quiet",
        "--no-build-isolation", wheel)
    assert "No broken requirements" in run(sys.executable, "-m", "pip", "--python", python,
                                           "check")
    return python


def test_the_wheel_holds_the_sdk_alone_and_declares_only_what_it_imports(
    tmp_path: Path
) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        packages = {Path(n).parts[0] for n in archive.namelist()}

    assert {p for p in packages if not p.endswith(".dist-info")} == {"sdk"}
    assert {canonicalize_name(r.name) for r in requirements_of(wheel)} == SDK_DEPENDENCIES


def test_in_a_fresh_environment_it_imports_none_of_the_server(fresh_python: Path,
                                                              tmp_path: Path) -> None:
    probe = textwrap.dedent(f"""
        import importlib.metadata, importlib.util, json, sys
        import sdk, sdk.agent, sdk.catalog, sdk.connection, sdk.credentials, sdk.protocol
        from sdk import AgentClient, CommandError, TaskContext, TaskFailed, load_or_create_seed
        server = {SERVER_PACKAGES!r}
        print(json.dumps({{
            "sdk": sdk.__file__, "prefix": sys.prefix,
            "loaded": sorted({{m.split(".")[0] for m in sys.modules}} & set(server)),
            "importable": [p for p in server if importlib.util.find_spec(p)],
            "installed": sorted(d.metadata["Name"] for d in importlib.metadata.distributions()),
        }}))
    """)
    # -I: no PYTHONPATH, no user site, not the working directory: only the environment.
    seen = json.loads(run(fresh_python, "-I", "-c", probe, cwd=tmp_path))

    assert seen["sdk"].startswith(seen["prefix"]), "the SDK came from outside the environment"
    assert seen["loaded"] == [] and seen["importable"] == []
    installed = {canonicalize_name(name) for name in seen["installed"]}
    assert "orchestrator" not in installed
    assert {"orchestrator-agent-sdk", *SDK_DEPENDENCIES} <= installed


AGENT = """
import asyncio, sys
from sdk import AgentClient, TaskContext
from sdk.catalog import watch

async def echo(ctx: TaskContext) -> object:
    await ctx.progress(0.5)
    return {"echoed": ctx.payload}

async def main(url: str, prefix: str) -> None:
    agent = AgentClient("standalone", capabilities=["cpu"], nats_url=url, prefix=prefix,
                        handlers={"echo": echo},
                        services=[{"name": "web", "address": "10.0.0.9", "port": 80}])
    reply = await agent.start()
    updates = watch(agent.nc, "web", prefix=prefix, identity=agent.agent_id)
    async for instances in updates:  # [] first if the catalog has not caught up yet
        if instances:
            print("web", [i["agent_id"] for i in instances], flush=True)
            break
    await updates.aclose()
    print("registered", reply["incarnation"], flush=True)
    while not agent.completed:
        await asyncio.sleep(0.05)
    print("completed", list(agent.completed), flush=True)
    await agent.stop()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_an_agent_runs_from_the_fresh_environment(
    fresh_python: Path, orchestrator, nats_server, nc, names, tmp_path: Path
) -> None:
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    process = await asyncio.create_subprocess_exec(
        str(fresh_python), "-I", str(script), nats_server.url, names.prefix, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    try:
        await eventually(lambda: orchestrator.agents.get("standalone"), timeout=30,
                         what="the standalone agent registered")
        reply = await request(nc, subject(names, "task.submit"),
                              {"task_id": "t1", "kind": "echo", "payload": {"n": 1}})
        assert reply["ok"], reply
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert process.returncode == 0, err.decode()
    assert out.decode().splitlines() == ["web ['standalone']", "registered 1",
                                         "completed ['t1']"]
    task = orchestrator.board.get("t1")
    assert task.status == "completed" and task.result == {"echoed": {"n": 1}}
