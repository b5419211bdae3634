"""README runs as written: its console sessions print what they show, against a real
orchestrator, with the log positions a fresh `make run` gives; its SDK example registers,
completes tasks and stops cleanly, and so does docs/client.md's; the settings table in
docs/settings.md is the code's; README stays short; and README and docs/ spell commands
and links so that they work."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from infra import settings as settings_module
from infra.settings import Settings
from sdk import AgentClient, TaskContext, TaskFailed
from services.app import Orchestrator
from tests.support import eventually, get_json, subject

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SETTINGS_DOC = ROOT / "docs" / "settings.md"
CLIENT_DOC = ROOT / "docs" / "client.md"
README_MAX_LINES = 250
# The screenful a newcomer sees first.
FIRST_SCREEN = 30
DOCS = sorted((ROOT / "docs").glob("*.md"))
CLI = ".venv/bin/orchestrator"
DEADLINE = 30.0  # seconds for anything the README waits for, on a loaded machine


@dataclass(frozen=True)
class Block:
    lang: str
    text: str


@dataclass
class Step:
    """One `$ command` of a console block and the lines shown after it."""

    command: str
    output: list[str] = field(default_factory=list)


def blocks(path: Path) -> list[Block]:
    found = re.findall(r"^```(\w*)\n(.*?)^```", path.read_text(), flags=re.M | re.S)
    return [Block(lang, text) for lang, text in found]


def console_steps(path: Path) -> list[Step]:
    steps: list[Step] = []
    for block in blocks(path):
        if block.lang != "console":
            continue
        for line in block.text.splitlines():
            if line.startswith("$ "):
                steps.append(Step(line[2:]))
            else:
                assert steps, f"a console block starts with output: {line}"
                steps[-1].output.append(line)
    return steps


def sdk_example() -> str:
    [example] = [b.text for b in blocks(README)
                 if b.lang == "python" and "AgentClient(" in b.text]
    return example


def client_example() -> str:
    [example] = [b.text for b in blocks(CLIENT_DOC)
                 if b.lang == "python" and "Client.connect(" in b.text]
    return example


# --- comparing what is shown with what is printed ---------------------------------------

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00")


def masked(value: Any) -> Any:
    """JSON with what differs from run to run (times, log positions) masked."""
    if isinstance(value, dict):
        return {k: "<position>" if k == "position" else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, str) and TIME.fullmatch(value):
        return "<time>"
    return value


def seconds_masked(line: str) -> str:
    return re.sub(r"(?<![\w.])\d+\.\d+", "<seconds>", line)


def explain_lines(lines: list[str]) -> list[str]:
    """`explain task` output without what differs from run to run: positions, times,
    event ids, measured seconds and heartbeat counts; progress reports are left out, as
    their number depends on when one looks."""
    shown = []
    for line in lines:
        if re.search(r"\s{2}Progressed\s", line + " "):
            continue
        line = TIME.sub("<time>", line.rstrip())
        # An event id: 16 characters of URL-safe base64 (22 in older logs), or a UUID.
        line = re.sub(r"\(event (?:[A-Za-z0-9_-]{16}|[A-Za-z0-9_-]{22})\)", "(event <event>)",
                      line)
        line = re.sub(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "<event>", line)
        line = seconds_masked(line)
        line = re.sub(r"last_heartbeat_seq=\d+", "last_heartbeat_seq=<n>", line)
        line = re.sub(r"^ *\d+  ", "<position>  ", line)
        shown.append(line)
    return shown


def positions(explained: str) -> list[int]:
    """The log positions `explain task` prints, progress reports left out."""
    return [int(p) for p, kind in re.findall(r"^ *(\d+)  \S+  (\w+)", explained, flags=re.M)
            if kind != "Progressed"]


# --- static checks ----------------------------------------------------------------------


def test_first_commands_are_make_run_and_make_test() -> None:
    first = blocks(README)[0].text.splitlines()
    assert [line.split("#")[0].strip() for line in first] == ["make run", "make test"]


def test_readme_is_short_and_its_first_screen_says_where_to_start() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README is {len(lines)} lines"
    first = "\n".join(lines[:FIRST_SCREEN])
    for needed in ("make run", "make test", "](#quick-start)", "](#writing-an-agent)",
                   "](#more)"):
        assert needed in first, needed
    assert "| `ORCH_" not in README.read_text(), "the settings table is in docs/settings.md"


def test_settings_table_is_the_settings_module() -> None:
    """Every setting in infra/settings.py is a row of docs/settings.md, with its flag and
    its default."""
    rows = [line for line in SETTINGS_DOC.read_text().splitlines()
            if line.startswith("| `ORCH_")]
    defaults = Settings()
    seen = set()
    for row in rows:
        variables, flags, _, default = [cell.strip() for cell in row.strip("|").split("|")]
        shown = [d.strip().strip("`") for d in default.split(",")]
        for variable, flag, value in zip(re.findall(r"`(ORCH_\w+)`", variables),
                                         re.findall(r"`(--[\w-]+)`", flags), shown,
                                         strict=True):
            [(name, option_flag)] = [(n, f) for n, v, f, _ in settings_module._OPTIONS
                                     if v == variable]
            assert flag == option_flag, variable
            expected = getattr(defaults, name)
            actual = None if value == "unset" else settings_module._convert(name, value)
            assert actual == expected, f"{variable}: settings.md says {value}, code {expected}"
            seen.add(variable)
    missing = {v for _, v, _, _ in settings_module._OPTIONS} - seen
    assert not missing, f"settings without a row in docs/settings.md: {sorted(missing)}"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_commands_are_spelled_as_they_run_from_a_fresh_clone(path: Path) -> None:
    """`orchestrator` alone is not on PATH after `make run`: `.venv/bin/orchestrator` is."""
    commands = []
    for block in blocks(path):
        if block.lang == "sh":
            commands += block.text.splitlines()
        elif block.lang == "console":
            commands += [line[2:] for line in block.text.splitlines() if line.startswith("$ ")]
    bare = [c for c in commands if re.match(r"(\w+=\S+ )*orchestrator ", c)]
    assert not bare, f"{path.name}: run as {CLI}: {bare}"
    prose = re.findall(r"`orchestrator [a-z][^`]*`", path.read_text())
    assert not prose, f"{path.name}: spell them {CLI} ...: {prose}"


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    return {anchor(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_lead_somewhere(path: Path) -> None:
    broken = []
    for target, fragment in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)", path.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        linked = (path.parent / target).resolve() if target else path
        if not linked.exists():
            broken.append(target)
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target}#{fragment}")
    assert not broken, f"{path.name} links to nothing: {broken}"


# --- the console sessions, run ------------------------------------------------------------


class Session:
    """Runs README's commands against the test's orchestrator instead of `make run`'s."""

    def __init__(self, orchestrator: Orchestrator, settings: Settings, tmp_path: Path) -> None:
        assert settings.nats_url is not None
        self.nats_url = settings.nats_url
        self.prefix = settings.subject_prefix
        self.interval = settings.heartbeat_interval
        self.http_port = orchestrator.http_port
        self.http = f"http://127.0.0.1:{orchestrator.http_port}"
        self.tmp_path = tmp_path
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.extra_env: dict[str, str] = {}
        # README shows the positions of a fresh `make run`, which has auth on; the fixture
        # has it off, and so writes fewer events: at the first start, the local operator's
        # identity and its read token (Created, ApiTokenIssued); for each demo agent, its
        # enrollment (Created, EnrollmentIssued, AgentEnrolled); for each SDK agent given
        # an enrollment token, its first connection (AgentEnrolled).
        self.auth_on_events = 2
        # Until the SDK's part: what follows depends on how long long-1 has run (its
        # progress is recorded every few seconds).
        self.positions_exact = True

    @property
    def env(self) -> dict[str, str]:
        # The identity `make run`'s local operator credentials give the CLI.
        return {**os.environ, "ORCH_NATS_URL": self.nats_url,
                "ORCH_SUBJECT_PREFIX": self.prefix, "ORCH_IDENTITY": "operator",
                "ORCH_DATA_DIR": str(self.tmp_path / "data"),
                "ORCH_HTTP_PORT": str(self.http_port), **self.extra_env}

    async def run(self, step: Step) -> None:
        argv = shlex.split(step.command.split(" | ")[0])
        if argv[:2] == ["make", "run"]:
            return  # the orchestrator fixture is what `make run` starts
        if step.command == "export TOKEN=$(cat .orchestrator/auth/read.token)":
            return  # the fixture runs with auth off: the read API wants no token
        if argv[0] == "export" and argv[1].startswith("ORCH_ENROLLMENT_TOKEN="):
            agent_id = argv[-1].rstrip(")")
            _, out, _ = await self.cli(["enroll", agent_id])
            assert out.startswith(f"oe1.{agent_id}.")
            self.extra_env["ORCH_ENROLLMENT_TOKEN"] = out.strip()
            self.positions_exact = False
            return
        if argv[0] == CLI and argv[1] == "agent" and step.output[0].startswith("orchestrator:"):
            code, _, err = await self.cli(argv[1:], check=False)  # refused: it says why
            assert (code, seconds_masked(err.strip())) == (1, seconds_masked(step.output[0]))
        elif argv[0] == CLI and argv[1] == "agent":
            await self.start(argv[2], [sys.executable, "-m", "services.cli.main", *argv[1:],
                                       *self.connection], step)
            self.auth_on_events += 3
        elif argv[:2] == [".venv/bin/python", "resizer.py"]:
            program = self.tmp_path / "resizer.py"
            program.write_text(sdk_example())
            await self.start(argv[2], [sys.executable, str(program), argv[2]], step,
                             cwd=self.tmp_path)  # where it keeps its key
            self.auth_on_events += 1
        elif argv[0] == CLI and argv[1] == "submit":
            _, out, _ = await self.cli(argv[1:])
            shown = orjson.loads("\n".join(step.output))
            assert masked(orjson.loads(out)) == masked(shown)
            self.check_position(orjson.loads(out)["position"], shown["position"], step)
        elif argv[0] == CLI and argv[1] == "explain":
            await self.until_shown(step, lambda: self.explain(argv[1:]),
                                   explain_lines(step.output))
            _, out, _ = await self.cli(argv[1:])
            for printed, shown in zip(positions(out), positions("\n".join(step.output)),
                                      strict=True):
                self.check_position(printed, shown, step)
        elif argv[0] == CLI and argv[1] == "services":
            await self.until_shown(step, lambda: self.lines(argv[1:]),
                                   [line.rstrip() for line in step.output])
        elif argv[:2] == ["curl", "-s"]:
            assert argv[2:4] == ["-H", "Authorization: Bearer $TOKEN"], step.command
            shown = masked(orjson.loads("\n".join(step.output))) if step.output else None
            await self.until_shown(step, lambda: self.get(argv[4]), shown)
            if step.output:
                _, _, body = await get_json(argv[4].replace("localhost:8080", self.http))
                self.check_position(body["position"],
                                    orjson.loads("\n".join(step.output))["position"], step)
        elif argv[:3] == ["pkill", "-9", "-f"]:
            agent_id = argv[3].removeprefix("orchestrator agent ")
            self.processes[agent_id].kill()
            await self.processes.pop(agent_id).wait()
        else:
            raise AssertionError(f"README shows a command this test cannot run: {step.command}")

    def check_position(self, printed: int, shown: int, step: Step) -> None:
        if self.positions_exact:
            assert printed + self.auth_on_events == shown, (
                f"{step.command}: a fresh `make run` gives position "
                f"{printed + self.auth_on_events}, README shows {shown}")

    async def lines(self, args: list[str]) -> list[str]:
        """What a command prints, stderr after stdout (a service not declared yet is
        not found)."""
        _, out, err = await self.cli(args, check=False, over_nats=False)
        return [line.rstrip() for line in (out + err).splitlines()]

    @property
    def connection(self) -> list[str]:
        return ["--nats-url", self.nats_url, "--subject-prefix", self.prefix]

    async def start(self, name: str, argv: list[str], step: Step, cwd: Path = ROOT) -> None:
        log = await asyncio.to_thread(open, self.tmp_path / f"{name}.log", "wb")
        with log:  # its log, to read when a step fails
            process = await asyncio.create_subprocess_exec(
                *argv, cwd=cwd, env=self.env, stdout=asyncio.subprocess.PIPE, stderr=log)
        self.processes[name] = process
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), DEADLINE)).decode().rstrip()
        [shown] = step.output
        assert line == re.sub(r"every [\d.]+s", f"every {self.interval}s", shown)

    async def cli(self, args: list[str], check: bool = True,
                  over_nats: bool = True) -> tuple[int, str, str]:
        """Run `orchestrator <args>`: exit code, stdout, stderr. The reads ask the read
        API (its port is in the environment), the rest NATS."""
        connection = self.connection if over_nats else []
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli.main", *args, *connection, cwd=ROOT,
            env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), DEADLINE)
        code = process.returncode or 0
        assert code == 0 or not check, err.decode()
        return code, out.decode(), err.decode()

    async def explain(self, args: list[str]) -> list[str]:
        return explain_lines((await self.cli(args))[1].splitlines())

    async def get(self, url: str) -> Any:
        """The body, masked; (status, body) for an error."""
        status, _, body = await get_json(url.replace("http://", "").replace(
            "localhost:8080", self.http))
        return masked(body) if status == 200 else (status, body)

    async def until_shown(self, step: Step, read: Callable[[], Awaitable[Any]],
                          shown: Any) -> None:
        """Read until the output is what README shows (things happen in their own time);
        with no output shown, until a JSON object is read."""
        last: list[Any] = [None]

        async def as_shown() -> bool:
            last[0] = await read()
            return last[0] == shown if shown is not None else isinstance(last[0], dict)

        try:
            await eventually(as_shown, timeout=DEADLINE, interval=0.2, what=step.command)
        except AssertionError:
            assert last[0] == shown, step.command  # shows the difference
            raise

    async def stop(self) -> dict[str, int]:
        """Ctrl-C for every process still running; their exit codes."""
        codes = {}
        for name, process in self.processes.items():
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
            try:
                codes[name] = await asyncio.wait_for(process.wait(), DEADLINE)
            except TimeoutError:
                process.kill()
                codes[name] = await process.wait()
        return codes


async def test_console_sessions_print_what_readme_shows(orchestrator, settings, tmp_path):
    """Quick start, the failover walk-through and the SDK's session, in README's order."""
    session = Session(orchestrator, settings, tmp_path)
    steps = console_steps(README)
    assert [s.command.split()[:2] for s in steps][:5] == [
        ["make", "run"], [CLI, "agent"], [CLI, "submit"], ["export", "TOKEN=$(cat"],
        ["curl", "-s"]]
    try:
        for step in steps:
            await session.run(step)
    finally:
        codes = await session.stop()
    # worker-1 was killed on purpose.
    assert codes == {"worker-2": 0, "resizer-1": 0, "resizer-2": 0}


# --- the SDK example, run -------------------------------------------------------------------


async def test_sdk_example_runs_tasks_and_stops_cleanly(orchestrator, settings, nc, names,
                                                        tmp_path):
    program = tmp_path / "resizer.py"
    program.write_text(sdk_example())
    assert settings.nats_url is not None
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(program), cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "ORCH_NATS_URL": settings.nats_url,
             "ORCH_SUBJECT_PREFIX": settings.subject_prefix})
    http = f"http://127.0.0.1:{orchestrator.http_port}"

    async def finished(task_id: str) -> dict[str, Any] | None:
        status, _, body = await get_json(f"{http}/v1/tasks/{task_id}")
        done = status == 200 and body["status"] in ("completed", "dead_lettered")
        return body if done else None

    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), DEADLINE)
        assert line.decode().strip() == "resizer-1 registered incarnation=1"

        # A task with a payload completes with the handler's return value.
        for body in ({"task_id": "resize-1", "kind": "resize", "payload": {"image": "cat.png"}},
                     {"task_id": "resize-2", "kind": "resize"}):
            reply = orjson.loads((await nc.request(
                subject(names, "task.submit"), orjson.dumps(body), timeout=5)).data)
            assert reply["ok"], reply
        done = await eventually(lambda: finished("resize-1"), timeout=DEADLINE,
                                what="resize-1 finished")
        assert (done["status"], done["agent_id"], done["result"]) == (
            "completed", "resizer-1", {"resized": {"image": "cat.png"}})
        # An empty payload is refused by the handler with TaskFailed(retryable=False).
        failed = await eventually(lambda: finished("resize-2"), timeout=DEADLINE,
                                  what="resize-2 finished")
        assert (failed["status"], failed["attempt"], failed["error"]) == (
            "dead_lettered", 1, "empty payload")

        # SIGTERM (or Ctrl-C) ends it: it deregisters and exits 0.
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), DEADLINE) == 0
        await eventually(lambda: orchestrator.agents.agents["resizer-1"].status == "left",
                         timeout=DEADLINE, what="resizer-1 deregistered")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()



async def test_client_example_prints_each_result_as_it_finishes(orchestrator, settings,
                                                                 tmp_path):
    async def resize(ctx: TaskContext) -> Any:
        if ctx.payload["image"] == "3.png":
            raise TaskFailed("unreadable image", retryable=False)
        return {"resized": ctx.payload}

    assert settings.nats_url is not None
    agent = AgentClient("resizer-1", nats_url=settings.nats_url,
                        prefix=settings.subject_prefix, capacity=4,
                        handlers={"resize": resize})
    await agent.start()
    program = tmp_path / "submitter.py"
    program.write_text(client_example())
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(program), cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "ORCH_NATS_URL": settings.nats_url,
                 "ORCH_SUBJECT_PREFIX": settings.subject_prefix,
                 "ORCH_CREDENTIALS": str(tmp_path / "none.nk"),  # auth is off here
                 "ORCH_EXAMPLE_TASKS": "10"})
        out, _ = await asyncio.wait_for(process.communicate(), DEADLINE)
        assert process.returncode == 0
        lines = sorted(out.decode().splitlines())
        assert len(lines) == 10
        assert "3.png" not in out.decode()  # the failure is said by its error, not input
        failed = [line for line in lines if "failed:" in line]
        assert len(failed) == 1 and failed[0].endswith("dead_lettered: unreadable image")
        done = [line for line in lines if "failed:" not in line]
        assert all("{'resized': {'image':" in line for line in done)
    finally:
        await agent.stop()
