"""The command line: the demo agent runs tasks that `orchestrator submit` sends."""

from __future__ import annotations

import asyncio
import sys

import orjson

from tests.processes import ROOT, AgentProcess
from tests.support import eventually


async def cli(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_demo_agent_runs_submitted_tasks(orchestrator, nats_server, names, tmp_path):
    agent = AgentProcess("demo", nats_server.url, names.prefix, tmp_path / "agent.log")
    agent.start()
    try:
        await eventually(lambda: "demo" in orchestrator.agents.agents, timeout=30)
        code, out = await cli("submit", "echo", "--payload", '{"hello": "world"}',
                              "--task-id", "t1", "--nats-url", nats_server.url,
                              "--subject-prefix", names.prefix)
        assert code == 0 and orjson.loads(out) == {
            "ok": True, "task_id": "t1", "status": "assigned",
            "position": orjson.loads(out)["position"]}
        code, _ = await cli("submit", "sleep", "--payload", '{"seconds": 0.2}', "--task-id",
                            "t2", "--nats-url", nats_server.url, "--subject-prefix", names.prefix)
        assert code == 0

        await eventually(lambda: all(
            (t := orchestrator.board.get(i)) and t.status == "completed" for i in ("t1", "t2")),
            timeout=30, what="both completed")
        assert orchestrator.board.tasks["t1"].result == {"hello": "world"}
        history = await orchestrator.store.history("task", "t2")
        # Its ten progress reports came within PROGRESS_RECORD_EVERY_S of its accept:
        # each reached the submitter's feed, none was written to the log.
        assert [e.name for e in history] == ["Submitted", "Assigned", "Accepted", "Completed"]
    finally:
        agent.stop()


async def test_submit_reports_a_refusal_with_a_nonzero_exit(orchestrator, nats_server, names):
    # A refusal was printed as raw JSON on stdout; README says a failure is one line on
    # stderr.
    code, out, err = await cli_apart("submit", "bad kind", "--nats-url", nats_server.url,
                                     "--subject-prefix", names.prefix)
    assert (code, out) == (1, "")
    assert len(err.splitlines()) == 1
    assert err.startswith("orchestrator: invalid_request: ")
    # A payload that is not JSON: said with the flag's name, a usage error.
    code, out, err = await cli_apart("submit", "echo", "--payload", "{nope",
                                     "--nats-url", nats_server.url)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1
    assert err.startswith("orchestrator: --payload is not JSON: ")


async def cli_apart(*args: str) -> tuple[int, str, str]:
    """The exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_help_lists_every_command() -> None:
    code, out = await cli("--help")
    assert code == 0
    for command in ("up", "agent", "submit", "schemas"):
        assert command in out


async def test_a_second_demo_agent_with_a_live_id_exits_saying_why(
        orchestrator, nats_server, names, tmp_path):
    # README's SDK example and the demo agent both used worker-1: the two processes took
    # the id from each other twice a second, silently.
    first = AgentProcess("worker-1", nats_server.url, names.prefix, tmp_path / "agent.log")
    first.start()
    try:
        await eventually(lambda: (v := orchestrator.agents.get("worker-1")) is not None
                         and v.last_heartbeat_at is not None, timeout=30,
                         what="the first demo agent heartbeating")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli.main", "agent", "worker-1", "--nats-url",
            nats_server.url, "--subject-prefix", names.prefix, "--log-level", "ERROR",
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(process.communicate(), 60)

        assert process.returncode == 1
        lines = err.decode().strip().splitlines()
        assert len(lines) == 1, lines
        assert "worker-1" in lines[0] and "conflict" in lines[0] and "replace" in lines[0]
        assert orchestrator.agents.get("worker-1").incarnation == 1
    finally:
        first.stop()


async def test_a_demo_agent_an_operator_deregisters_exits_saying_so(
        orchestrator, nats_server, names, tmp_path):
    agent = AgentProcess("demo", nats_server.url, names.prefix, tmp_path / "agent.log")
    agent.start()
    try:
        await eventually(lambda: "demo" in orchestrator.agents.agents, timeout=30)

        code, out = await cli("deregister", "demo", "--nats-url", nats_server.url,
                              "--subject-prefix", names.prefix)

        assert code == 0 and "left" in out
        process = agent.process
        assert process is not None
        await eventually(lambda: process.poll() is not None, timeout=30,
                         what="the demo agent exited")
        assert process.returncode == 0
        log = (tmp_path / "agent.log").read_text()
        assert "demo was deregistered by the orchestrator (removed by " in log
    finally:
        agent.stop()
