"""The TypeScript SDK's agent (sdk-ts/) against the Python SDK's (sdk/agent.py): echo
tasks completed a second by one agent of each, with the same capacity, fed the same way.

Each agent is a process of its own, started the same way and timed only once it has
registered: `node bench/echo_agent.mjs` (the compiled SDK in sdk-ts/dist, `make sdk-ts`)
and `python -m bench.echo_agent` (AgentClient). Each runs a kind of its own
(`echo-python`, `echo-ts`) by returning the task's payload, so a task can only be placed
on the agent of its language. A run is one submit_many of the run's tasks of one kind by
a Python Client in the benchmark process, every result awaited (and checked against its
payload); its rate is the tasks over the time from the first submit to the last result.
Both agents stay up, one idle while the other's run goes on, and runs alternate, Python
then TypeScript, against one orchestrator and nats-server, many short runs rather than a
few long ones: the machine's drift and the log's growth fall on both alike. Each rate is
the median of its runs. The agents' own CPU per task is measured too (user and system
time of the process over its runs): the rate is the whole path's (submit, placement,
accept and completion appended, result pushed), of which the agent's part is small.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import IO

from bench.harness import IDENTITY, ROOT, MissingTool, nats_server, orchestrator
from bench.profile import cpu_seconds
from bench.sizes import Size
from sdk.client import Client

CAPACITY = 16
WARM_UP = 100  # tasks each agent runs before its timed ones: connections, JIT, caches
READY_TIMEOUT_S = 60.0
RESULT_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 20.0
SDK_TS = ROOT / "sdk-ts"
TS_AGENT = ROOT / "bench" / "echo_agent.mjs"
LANGUAGES = ("python", "ts")


def agent_command(language: str, nats_url: str, prefix: str) -> list[str]:
    """The agent `<language>-1`, running tasks of the kind `echo-<language>`."""
    args = [nats_url, prefix, f"{language}-1", str(CAPACITY), f"echo-{language}"]
    if language == "ts":
        return [node_binary(), str(TS_AGENT), *args]
    return [sys.executable, "-m", "bench.echo_agent", *args]


def node_binary() -> str:
    """Node.js, once the SDK's packages are installed and it is compiled; MissingTool
    saying how to get there otherwise."""
    node = shutil.which("node")
    if node is None:
        raise MissingTool("node is not on PATH: the sdk_ts scenario needs Node.js >= 18, "
                          "then `make sdk-ts` (npm ci and tsc in sdk-ts/)")
    if not (SDK_TS / "node_modules" / "@nats-io" / "transport-node").is_dir():
        raise MissingTool(f"the TypeScript SDK's packages are not installed in "
                          f"{SDK_TS}/node_modules: run `make sdk-ts` (npm ci, then tsc)")
    if not (SDK_TS / "dist" / "index.js").is_file():
        raise MissingTool(f"the TypeScript SDK is not compiled ({SDK_TS}/dist/index.js "
                          f"missing): run `make sdk-ts` (npm ci, then tsc)")
    return node


async def run(size: Size) -> dict[str, float]:
    node_binary()  # before any server is started
    rates: dict[str, list[float]] = {language: [] for language in LANGUAGES}
    cpu = dict.fromkeys(LANGUAGES, 0.0)
    async with nats_server() as server, orchestrator(server) as orch:
        await orch.start()
        client = await Client.connect(server.url, identity=IDENTITY,
                                      subject_prefix=orch.prefix)
        try:
            async with contextlib.AsyncExitStack() as stack:
                agents = {
                    language: await stack.enter_async_context(agent_process(
                        agent_command(language, server.url, orch.prefix)))
                    for language in LANGUAGES}
                for language in LANGUAGES:
                    await echo_tasks(client, language, WARM_UP, f"w{language}")
                assert orch.process is not None
                servers = {"orchestrator": orch.process.pid, "nats_server": server.pid}
                server_cpu = {name: cpu_seconds(pid) for name, pid in servers.items()}
                began = time.monotonic()
                for index in range(size.sdk_ts_pairs):
                    for language, process in agents.items():
                        before = cpu_seconds(process.pid)
                        rates[language].append(await echo_tasks(
                            client, language, size.sdk_ts_tasks, f"{index}{language}"))
                        cpu[language] += cpu_seconds(process.pid) - before
                wall = time.monotonic() - began
                cores = {f"cores_{name}": (cpu_seconds(pid) - server_cpu[name]) / wall
                         for name, pid in servers.items()}
        finally:
            await client.close()
    python, ts = (statistics.median(rates[language]) for language in LANGUAGES)
    pairs = [t / p for p, t in zip(rates["python"], rates["ts"], strict=True)]
    tasks = size.sdk_ts_tasks * size.sdk_ts_pairs
    return {
        "tasks_per_run": size.sdk_ts_tasks,
        "runs_each": size.sdk_ts_pairs,
        "agent_capacity": CAPACITY,
        "python_agent_tasks_per_s": python,
        "ts_agent_tasks_per_s": ts,
        "agent_ratio_vs_python": ts / python,
        # Each TypeScript run over the Python run just before it, the median: what drift
        # over the scenario's length does to the ratio of the medians shows here.
        "agent_ratio_pairs_median": statistics.median(pairs),
        "python_agent_tasks_per_s_min": min(rates["python"]),
        "python_agent_tasks_per_s_max": max(rates["python"]),
        "ts_agent_tasks_per_s_min": min(rates["ts"]),
        "ts_agent_tasks_per_s_max": max(rates["ts"]),
        # CPU the agent's process used per task over its timed runs (its idle time
        # through the other's runs, heartbeats only, is not counted).
        "python_agent_cpu_ms_per_task": cpu["python"] * 1000 / tasks,
        "ts_agent_cpu_ms_per_task": cpu["ts"] * 1000 / tasks,
        # What the rest of the path used meanwhile (cores, over all the timed runs).
        **cores,
    }


async def echo_tasks(client: Client, language: str, count: int, tag: str) -> float:
    """`count` tasks for `language`'s agent submitted with one submit_many, every result
    awaited and checked against its payload: tasks a second from the first submit to the
    last result."""
    payloads = {f"e{tag}-{i}": {"n": i, "tag": tag} for i in range(count)}
    started = time.monotonic()
    handles = await client.submit_many(
        [{"kind": f"echo-{language}", "payload": payload, "task_id": task_id}
         for task_id, payload in payloads.items()])
    seen = 0
    async for outcome in client.results(handles, timeout=RESULT_TIMEOUT_S):
        if outcome.value() != payloads[outcome.task_id]:
            raise RuntimeError(f"task {outcome.task_id} echoed {outcome.result!r}")
        seen += 1
    elapsed = time.monotonic() - started
    if seen != count:
        raise RuntimeError(f"{seen} results of {count} tasks")
    return count / elapsed


@contextlib.asynccontextmanager
async def agent_process(command: list[str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """The agent's process, yielded once it printed `ready` (it registered); stopped with
    SIGTERM (it deregisters) at the end. Its stderr is said if it fails to start."""
    with tempfile.TemporaryFile() as errors:
        process = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=errors)
        try:
            assert process.stdout is not None
            try:
                line = await asyncio.wait_for(process.stdout.readline(), READY_TIMEOUT_S)
            except TimeoutError:
                line = b""
            if line.strip() != b"ready":
                raise RuntimeError(f"agent {command[1]} did not start: {_said(errors)}")
            yield process
        finally:
            await _stop(process)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()


def _said(errors: IO[bytes]) -> str:
    errors.seek(0)
    text = errors.read().decode(errors="replace").strip()
    return text[-2000:] or "nothing on stderr"

