"""The operator's commands, run as a user runs them (the console script, in a subprocess)
against a real orchestrator: reads through the read API, writes over NATS, their tables
and JSON, their one-line errors and exit codes, and where their settings come from."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import uuid
from typing import Any

import orjson

from infra.bus.embedded import free_port
from sdk import AgentClient, TaskContext, TaskFailed
from services.cli.main import EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, build_parser
from tests.processes import ROOT
from tests.support import eventually, request, subject

# Connections come from ORCH_* variables unless a test says otherwise, as on a machine
# where the operator exported them once.
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", *args, cwd=ROOT, env={**BASE_ENV, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


def settings_env(orchestrator: Any, nats_url: str, prefix: str, tmp_path: Any) -> dict[str, str]:
    return {"ORCH_NATS_URL": nats_url, "ORCH_SUBJECT_PREFIX": prefix,
            "ORCH_HTTP_PORT": str(orchestrator.http_port), "ORCH_DATA_DIR": str(tmp_path)}


def fields(out: str) -> dict[str, str]:
    """The `name  value` lines a status command starts with."""
    head = out.split("\n\n")[0].splitlines()
    pairs = [line.split(None, 1) for line in head]
    return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}


async def hold(ctx: TaskContext) -> None:
    await asyncio.Event().wait()


async def fleet(nats_server: Any, names: Any) -> list[AgentClient]:
    web = {"name": "web", "address": "10.0.0.1", "port": 80, "tags": ["v1"]}
    agents = [
        AgentClient("w1", ["gpu"], capacity=2, labels={"zone": "eu"}, services=[web],
                    nats_url=nats_server.url, prefix=names.prefix, handlers={"work": hold}),
        AgentClient("w2", ["cpu"], nats_url=nats_server.url, prefix=names.prefix,
                    handlers={"other": hold}),
    ]
    for agent in agents:
        await agent.start()
    return agents


async def test_reads_print_tables_for_people_and_json_for_scripts(
        orchestrator, nats_server, names, nc, tmp_path):
    env = settings_env(orchestrator, nats_server.url, names.prefix, tmp_path)
    agents = await fleet(nats_server, names)
    try:
        await request(nc, subject(names, "task.submit"), {"task_id": "t1", "kind": "work"})
        await eventually(lambda: orchestrator.board.tasks["t1"].status == "running",
                         timeout=30, what="t1 running on w1")

        code, out, err = await run("agents", env=env)
        assert (code, err) == (0, "")
        lines = out.splitlines()
        assert lines[0].split() == ["agent", "status", "incarnation", "running", "load",
                                    "capabilities", "labels", "last_heartbeat"]
        assert set(lines[1]) == {"-", " "}
        assert lines[2].split()[:4] == ["w1", "healthy", "1", "1/2"]
        assert lines[2].split()[5:7] == ["gpu", "zone=eu"]
        assert lines[3].split()[:4] == ["w2", "healthy", "1", "0/1"]
        # Columns are aligned: every row's status starts where the header's does.
        assert {line.index("healthy") for line in lines[2:]} == {lines[0].index("status")}

        code, out, _ = await run("agents", "--json", "--capability", "gpu", env=env)
        assert code == 0
        assert [a["agent_id"] for a in orjson.loads(out)["agents"]] == ["w1"]
        code, out, _ = await run("agents", "--json", "--label", "zone=eu", "--status",
                                 "healthy", env=env)
        assert [a["agent_id"] for a in orjson.loads(out)["agents"]] == ["w1"]

        code, out, _ = await run("agent-status", "w1", env=env)
        assert code == 0
        assert fields(out)["status"] == "healthy" and fields(out)["running"] == "1/2: t1"
        assert "history: 1 event(s)" in out and "Registered" in out
        code, out, _ = await run("agent-status", "w1", "--json", env=env)
        shown = orjson.loads(out)
        assert shown["agent"]["agent_id"] == "w1"
        assert [e["type"] for e in shown["history"]] == ["Registered"]

        code, out, _ = await run("tasks", env=env)
        lines = out.splitlines()
        assert code == 0 and lines[0].split() == [
            "task", "kind", "status", "agent", "attempt", "progress", "submitted_at"]
        assert lines[2].split()[:5] == ["t1", "work", "running", "w1", "1"]
        code, out, _ = await run("tasks", "--json", "--status", "running", "--agent", "w1",
                                 env=env)
        assert [t["task_id"] for t in orjson.loads(out)["tasks"]] == ["t1"]
        code, out, _ = await run("tasks", "--json", "--kind", "nothing", env=env)
        assert orjson.loads(out) == {"tasks": []}

        code, out, _ = await run("task-status", "t1", env=env)
        assert code == 0 and fields(out)["status"] == "running" and fields(out)["agent"] == "w1"
        assert [line.split()[4] for line in out.split("event(s)\n")[1].splitlines()[2:]] == [
            "Submitted", "Assigned", "Accepted"]
        code, out, _ = await run("task-status", "t1", "--json", "--history", "1", env=env)
        shown = orjson.loads(out)
        assert shown["task"]["status"] == "running"
        assert [e["type"] for e in shown["history"]] == ["Accepted"]

        code, out, _ = await run("services", env=env)
        assert code == 0 and out.splitlines()[0].split() == [
            "service", "instances", "healthy", "tags"]
        assert out.splitlines()[2].split() == ["web", "1", "1", "v1"]
        code, out, _ = await run("services", "web", "--json", "--healthy", env=env)
        assert [(i["agent_id"], i["port"]) for i in orjson.loads(out)["instances"]] == [
            ("w1", 80)]
        code, out, _ = await run("services", "web", env=env)
        assert out.splitlines()[2].split() == ["w1", "healthy", "10.0.0.1:80", "v1", "zone=eu"]
    finally:
        for agent in agents:
            await agent.stop()


async def test_writes_are_sent_as_the_cli_identity_and_say_what_changed(
        orchestrator, nats_server, names, nc, tmp_path):
    env = settings_env(orchestrator, nats_server.url, names.prefix, tmp_path)
    agents = await fleet(nats_server, names)
    try:
        # Nobody runs kind `idle`: it waits, pending, until cancelled.
        await request(nc, subject(names, "task.submit"), {"task_id": "t2", "kind": "idle"})
        code, out, err = await run("cancel", "t2", "--reason", "not needed", env=env)
        assert (code, err) == (0, "")
        assert out.startswith("task t2: cancelled (position ")
        history = await orchestrator.store.history("task", "t2")
        assert history[-1].name == "Cancelled" and history[-1].identity == "anonymous"

        code, out, _ = await run("cancel", "t2", "--json", env=env)
        assert code == 0 and orjson.loads(out)["status"] == "cancelled"
        code, out, _ = await run("cancel", "t2", env=env)
        assert (code, out) == (0, "task t2: cancelled (already: no change)\n")

        code, out, err = await run("drain", "w1", env=env)
        assert (code, err) == (0, "") and out.startswith("agent w1: draining (position ")
        await eventually(lambda: orchestrator.agents.get("w1").status == "draining",
                         what="w1 draining")
        # Draining, w1 (the only gpu agent) is given nothing; undrained, it is.
        await request(nc, subject(names, "task.submit"),
                      {"task_id": "t3", "kind": "work", "requires": ["gpu"]})
        await eventually(lambda: "t3" in orchestrator.board.tasks, what="t3 on the board")
        assert orchestrator.board.tasks["t3"].agent_id is None
        code, out, err = await run("undrain", "w1", env=env)
        assert (code, err) == (0, "") and out.startswith("agent w1: healthy (position ")
        await eventually(lambda: orchestrator.agents.get("w1").status == "healthy",
                         what="w1 healthy again")
        await eventually(lambda: orchestrator.board.tasks["t3"].agent_id == "w1",
                         what="t3 placed on w1 once undrained")
        history = await orchestrator.store.history("agent", "w1")
        assert history[-1].name == "Undrained" and history[-1].identity == "anonymous"
        code, out, _ = await run("undrain", "w1", env=env)
        assert (code, out) == (0, "agent w1: healthy (already: no change)\n")
        code, out, err = await run("deregister", "w2", "--json", env=env)
        assert code == 0 and orjson.loads(out)["status"] == "left", err
        await eventually(lambda: orchestrator.agents.get("w2").status == "left",
                         what="w2 left")

        code, out, err = await run("cancel", "nope", env=env)
        assert (code, out) == (EXIT_REFUSED, "")
        assert err.splitlines() == [
            "orchestrator: task nope was not cancelled: not_found: task nope does not exist"]
        code, out, err = await run("drain", "ghost", env=env)
        assert (code, out) == (EXIT_REFUSED, "")
        assert err.splitlines() == [
            "orchestrator: agent ghost was not drained: not_found: agent ghost is not registered"]
    finally:
        for agent in agents:
            await agent.stop(deregister=False)


async def test_failures_are_one_line_with_their_exit_code(
        orchestrator, nats_server, names, tmp_path):
    env = settings_env(orchestrator, nats_server.url, names.prefix, tmp_path)
    dead = f"nats://127.0.0.1:{free_port()}"
    for command in (["cancel", "t1"], ["drain", "w1"], ["events"], ["explain", "task", "t"],
                    ["submit", "echo"]):
        code, out, err = await run(*command, "--nats-url", dead, env=env)
        assert (code, out) == (EXIT_UNREACHABLE, ""), command
        assert err.splitlines() == [f"orchestrator: cannot connect to NATS at {dead}: is it "
                                    "running? is ORCH_NATS_URL (--nats-url) right?"], command

    # A NATS with no orchestrator under this prefix: nobody answers, there is no log.
    other = "t" + uuid.uuid4().hex[:10]
    code, _, err = await run("cancel", "t1", "--subject-prefix", other, env=env)
    assert code == EXIT_UNREACHABLE
    assert err.splitlines() == ["orchestrator: no orchestrator answered: is it running, "
                                "with this --subject-prefix?"]
    code, _, err = await run("events", "--subject-prefix", other, env=env)
    assert code == EXIT_UNREACHABLE
    assert err.splitlines() == [f"orchestrator: no event log {other.upper()}_EVENTS: has an "
                                f"orchestrator run with --subject-prefix {other} on this NATS?"]

    no_api = f"http://127.0.0.1:{free_port()}"
    for command in (["agents"], ["tasks", "--watch"], ["task-status", "t1"], ["services"]):
        code, out, err = await run(*command, "--api-url", no_api, env=env)
        assert (code, out) == (EXIT_UNREACHABLE, ""), command
        assert err.splitlines() == [f"orchestrator: cannot reach the read API at {no_api}: is "
                                    "the orchestrator running? is ORCH_HTTP_PORT (--api-url) "
                                    "right?"]

    code, out, err = await run("task-status", "nope", env=env)
    assert (code, out, err) == (EXIT_REFUSED, "", "orchestrator: not_found: no task nope\n")
    code, out, err = await run("agent-status", "nope", env=env)
    assert (code, out, err) == (EXIT_REFUSED, "", "orchestrator: not_found: no agent nope\n")
    code, _, err = await run("explain", "task", "nope", env=env)
    assert (code, err) == (EXIT_REFUSED, "orchestrator: no task nope in the log\n")
    code, out, err = await run("agents", "--label", "zone", env=env)
    assert (code, out, err) == (EXIT_USAGE, "", "orchestrator: --label zone: give key=value\n")
    code, _, err = await run("tasks", "--status", "lost", env=env)
    assert code == EXIT_USAGE and "invalid choice: 'lost'" in err

    # --log-level DEBUG: the traceback too, before the same last line.
    code, _, err = await run("cancel", "t1", "--nats-url", dead, "--log-level", "DEBUG",
                             env=env)
    assert code == EXIT_UNREACHABLE and "Traceback" in err
    assert err.splitlines()[-1].startswith("orchestrator: cannot connect to NATS at ")


async def test_a_flag_wins_over_its_variable_which_wins_over_the_default(
        orchestrator, nats_server, names, tmp_path, monkeypatch):
    env = settings_env(orchestrator, nats_server.url, names.prefix, tmp_path)
    api = f"http://127.0.0.1:{orchestrator.http_port}"
    dead_api = f"http://127.0.0.1:{free_port()}"
    dead_nats = f"nats://127.0.0.1:{free_port()}"

    # The read API: --api-url over ORCH_HTTP_HOST/ORCH_HTTP_PORT.
    code, _, err = await run("agents", env=env)
    assert code == 0, err
    code, _, err = await run("agents", "--api-url", api,
                             env={**env, "ORCH_HTTP_PORT": str(free_port())})
    assert code == 0, err
    code, _, err = await run("agents", "--api-url", dead_api, env=env)
    assert code == EXIT_UNREACHABLE and dead_api in err

    # NATS: --nats-url over ORCH_NATS_URL; --subject-prefix over ORCH_SUBJECT_PREFIX.
    code, _, err = await run("events", "--limit", "1", env=env)
    assert code == 0, err
    code, _, err = await run("events", "--nats-url", nats_server.url,
                             env={**env, "ORCH_NATS_URL": dead_nats})
    assert code == 0, err
    code, _, err = await run("events", "--nats-url", dead_nats, env=env)
    assert code == EXIT_UNREACHABLE and dead_nats in err
    code, _, err = await run("events", "--subject-prefix", "elsewhere", env=env)
    assert code == EXIT_UNREACHABLE and "ELSEWHERE_EVENTS" in err

    # And the defaults, with no variable set.
    for variable in [v for v in os.environ if v.startswith("ORCH_")]:
        monkeypatch.delenv(variable)
    parsed = build_parser().parse_args(["agents"])
    assert parsed.api_url == "http://127.0.0.1:8080"
    parsed = build_parser().parse_args(["cancel", "t1"])
    assert (parsed.nats_url, parsed.subject_prefix) == ("nats://127.0.0.1:4222", "orch")
    # The embedded server's port, when `up` was given one in this shell.
    monkeypatch.setenv("ORCH_EMBEDDED_NATS_PORT", "4300")
    assert build_parser().parse_args(["cancel", "t1"]).nats_url == "nats://127.0.0.1:4300"
    monkeypatch.setenv("ORCH_HTTP_HOST", "0.0.0.0")
    monkeypatch.setenv("ORCH_HTTP_PORT", "9000")
    assert build_parser().parse_args(["tasks"]).api_url == "http://127.0.0.1:9000"


async def test_watch_prints_again_when_the_fleet_changes(
        orchestrator, nats_server, names, tmp_path):
    env = settings_env(orchestrator, nats_server.url, names.prefix, tmp_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", "agents", "--watch", "--json", cwd=ROOT,
        env={**BASE_ENV, **env}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    agent = AgentClient("late", ["cpu"], nats_url=nats_server.url, prefix=names.prefix)
    try:
        first = orjson.loads(await asyncio.wait_for(process.stdout.readline(), 30))
        assert first["agents"] == []
        await agent.start()
        second = orjson.loads(await asyncio.wait_for(process.stdout.readline(), 30))
        assert [(a["agent_id"], a["status"]) for a in second["agents"]] == [
            ("late", "healthy")]
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), 30)
        assert (process.returncode, err.decode()) == (0, "")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await agent.stop()


async def test_completion_scripts_know_every_command() -> None:
    code, bash, _ = await run("completion", "bash")
    assert code == 0
    for command in ("agents", "agent-status", "tasks", "task-status", "services", "cancel",
                    "drain", "undrain", "deregister", "events", "completion"):
        assert command in bash
    assert "--api-url" in bash and "--watch" in bash
    code, zsh, _ = await run("completion", "zsh")
    assert code == 0 and zsh.startswith("#compdef orchestrator")


async def test_help_documents_the_exit_codes() -> None:
    code, out, _ = await run("--help")
    assert code == 0
    text = " ".join(out.split())
    for meaning in ("0 done", "1 refused", "2 bad usage", "3 cannot start",
                    "4 cannot reach NATS"):
        assert meaning in text


async def test_submit_wait_prints_the_outcome_and_exits_by_it(
        orchestrator, nats_server, names, tmp_path) -> None:
    async def echo(ctx: TaskContext) -> Any:
        return ctx.payload

    async def broken(ctx: TaskContext) -> Any:
        raise TaskFailed("no such input", retryable=False)

    agent = AgentClient("w1", nats_url=nats_server.url, prefix=names.prefix,
                        handlers={"echo": echo, "broken": broken})
    await agent.start()
    env = settings_env(orchestrator, nats_server.url, names.prefix, tmp_path)
    try:
        code, out, err = await run("submit", "echo", "--payload", '{"n": 1}', "--task-id",
                                   "t1", "--wait", env=env)
        assert code == 0, err
        assert orjson.loads(out) == {"task_id": "t1", "status": "completed", "attempt": 1,
                                     "result": {"n": 1}, "error": None,
                                     "position": orjson.loads(out)["position"]}
        code, out, err = await run("submit", "broken", "--task-id", "t2", "--wait", env=env)
        assert code == EXIT_REFUSED
        assert orjson.loads(out)["status"] == "dead_lettered"
        assert err.strip() == "orchestrator: task t2 dead_lettered: no such input"
    finally:
        await agent.stop()


async def run_into_closed_pipe(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a command whose stdout's reader is already gone, as `... | head` leaves it."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli.main", *args, cwd=ROOT,
            env={**BASE_ENV, **(env or {})}, stdout=write_end, stderr=asyncio.subprocess.PIPE)
    finally:
        os.close(write_end)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, err.decode()


async def test_a_closed_stdout_ends_a_command_quietly(
        orchestrator, nats_server, names, nc, tmp_path) -> None:
    # `orchestrator task-status t1 | head` ended in "unexpected error: BrokenPipeError".
    env = settings_env(orchestrator, nats_server.url, names.prefix, tmp_path)
    await request(nc, subject(names, "task.submit"), {"task_id": "t1", "kind": "work"})
    for command in (["task-status", "t1"], ["tasks", "--json"], ["--help"]):
        assert await run_into_closed_pipe(*command, env=env) == (0, ""), command


async def test_no_flag_is_taken_by_a_prefix_of_it() -> None:
    # `agents --watc` silently started an endless watch.
    code, out, err = await run("agents", "--watc")
    assert (code, out) == (EXIT_USAGE, "")
    assert "unrecognized arguments: --watc" in err

    def parsers(parser: Any) -> Any:
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub)

    assert all(not parser.allow_abbrev for parser in parsers(build_parser()))


async def test_a_dead_agent_counts_none_of_the_tasks_moved_off_it(
        orchestrator, nats_server, names, nc, tmp_path):
    """`agents --status dead` and the read API: what the board still holds on a dead
    agent, not its last heartbeat (issue 34, item 2)."""
    env = settings_env(orchestrator, nats_server.url, names.prefix, tmp_path)
    doomed = AgentClient("doomed", ["gpu"], capacity=3, nats_url=nats_server.url,
                         prefix=names.prefix, handlers={"work": hold})
    rescuer = AgentClient("rescuer", ["gpu"], capacity=3, nats_url=nats_server.url,
                          prefix=names.prefix, handlers={"work": hold})
    await doomed.start()
    try:
        for i in range(3):
            await request(nc, subject(names, "task.submit"), {"task_id": f"j{i}", "kind": "work"})
        await eventually(lambda: len(doomed.running) == 3, what="three running on doomed")
        await eventually(lambda: len(orchestrator.agents.get("doomed").running) == 3,
                         what="a heartbeat saying so")
        await rescuer.start()
        await doomed.stop(deregister=False)  # a crash: its last heartbeat said 3 running
        await eventually(lambda: all(orchestrator.board.tasks[f"j{i}"].agent_id == "rescuer"
                                     for i in range(3)), timeout=20, what="moved off")
        code, out, err = await run("agents", "--status", "dead", env=env)
        assert code == 0, err
        row = out.splitlines()[2].split()
        assert row[:5] == ["doomed", "dead", "1", "0/3", "0%"], out
    finally:
        await rescuer.stop(deregister=False)
        await doomed.stop(deregister=False)
