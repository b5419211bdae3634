"""`python -m bench.soak --minutes 10` (`make soak`): a churn soak of a whole deployment.

An external nats-server configured by `orchestrator auth server-config` (auth on), two
or more orchestrators sharing its keys, 20 demo agents enrolled as the docs say, and a
client submitting 20 tasks a second (some failing, retried and dead-lettered, some
cancelled), while an agent is SIGKILLed every ~20 s (started again once declared dead),
one is drained every ~60 s (undrained 30 s later) and the leader is SIGKILLed once. Then
the submitting stops, every task is waited for, the log is exported (`orchestrator
events --json`) and every invariant checked on it (bench/soak/invariants.py); RSS of
each orchestrator is sampled throughout. A table is printed, the figures written as
JSON; the exit status is 1 when an invariant failed (named in the table)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.soak import report
from bench.soak.churn import Churn
from bench.soak.invariants import check
from bench.soak.procs import (
    PREFIX,
    TIMINGS,
    Agent,
    Cli,
    Orchestrator,
    server_config,
    share_keys,
    start_nats,
)
from bench.soak.workload import Sampler, Submitter
from infra.auth.credentials import read_secret
from sdk.client import Client

log = logging.getLogger("soak")
ROOT = Path(__file__).resolve().parents[2]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="of churn (default 10)")
    parser.add_argument("--orchestrators", type=int, default=2)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--capacity", type=int, default=4, help="of each agent")
    parser.add_argument("--rate", type=float, default=20.0, help="tasks submitted a second")
    parser.add_argument("--kill-every", type=float, default=20.0, help="seconds, about")
    parser.add_argument("--drain-every", type=float, default=60.0, help="seconds, about")
    parser.add_argument("--leader-kill-at", type=float, default=0.4,
                        help="when the leader is killed, as a share of the churn")
    parser.add_argument("--finish-timeout", type=float, default=300.0,
                        help="seconds every task has to finish once submitting stops")
    parser.add_argument("--orchestrator-env", action="append", default=[],
                        metavar="ORCH_X=VALUE",
                        help="a setting for every orchestrator (repeatable), e.g. "
                             "ORCH_FINISHED_TASK_LIMIT=2000 to tell retained tasks from "
                             "other growth")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "soak_results.json")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run's directory (logs, store) even when it passed")
    return parser.parse_args(argv)


async def _until(what: str, probe: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.2)


async def _cli_json(cli: Cli, *args: str) -> dict[str, Any]:
    code, out, err = await cli.run(*args, "--json")
    if code:
        raise RuntimeError(f"orchestrator {' '.join(args)}: exit {code}: {err.strip()}")
    reply: dict[str, Any] = orjson.loads(out)
    return reply


async def soak(args: argparse.Namespace, run_dir: Path) -> int:
    rng = random.Random(args.seed)
    data = [run_dir / f"orch{i}" for i in range(args.orchestrators)]
    server = start_nats(run_dir, server_config(data[0]))
    for other in data[1:]:
        share_keys(data[0], other)
    orchestrators = [Orchestrator(f"o{i}", d, server.url, run_dir / f"o{i}.log")
                     for i, d in enumerate(data)]
    for orch in orchestrators:
        orch.env.update(pair.split("=", 1) for pair in args.orchestrator_env)
    (run_dir / "agents").mkdir()
    agents = [Agent(f"a{i:02d}", data[0], server.url, run_dir / "agents", args.capacity)
              for i in range(args.agents)]
    client: Client | None = None
    try:
        for orch in orchestrators:
            orch.start()
        for orch in orchestrators:
            await _until(f"{orch.name} ready", orch.ready, 180)
        cli = Cli(data[0], server.url)
        token = (await _cli_json(cli, "token", "create", "--scope", "read"))["token"]
        for orch in orchestrators:
            orch.token = token
        seed_file = run_dir / "submitter.nk"
        await _cli_json(cli, "identity", "create", "soak", "--role", "submitter",
                        "--seed-file", str(seed_file))
        for agent in agents:
            agent.start()

        async def registered() -> bool:
            return all(a.incarnation() is not None for a in agents)

        await _until("agents registered", registered, 180)
        client = await Client.connect(server.url, identity="soak", subject_prefix=PREFIX,
                                      nkey_seed=read_secret(seed_file))
        log.info("up: %d orchestrators, %d agents, nats %s, run dir %s", len(orchestrators),
                 len(agents), server.url, run_dir)
        return await _run(args, run_dir, rng, cli, orchestrators, agents, client)
    finally:
        if client is not None:
            await client.close()
        for agent in agents:
            agent.stop()
        for orch in orchestrators:
            orch.stop()
        server.stop()


async def _run(args: argparse.Namespace, run_dir: Path, rng: random.Random, cli: Cli,
               orchestrators: list[Orchestrator], agents: list[Agent], client: Client) -> int:
    submitter = Submitter(client, args.rate, rng)
    sampler = Sampler(orchestrators, submitter)
    churn = Churn(agents, orchestrators, cli, rng)
    stop, stop_sampling = asyncio.Event(), asyncio.Event()
    churn_s = args.minutes * 60
    sampling = asyncio.create_task(sampler.run(stop_sampling))
    running = [asyncio.create_task(c) for c in (
        submitter.run(stop), churn.kill_agents(stop, args.kill_every),
        churn.drain_agents(stop, args.drain_every),
        churn.kill_leader(stop, churn_s * args.leader_kill_at))]
    began = time.monotonic()
    while time.monotonic() - began < churn_s:
        await asyncio.sleep(min(60.0, churn_s - (time.monotonic() - began)))
        log.info("%.0f s: %d submitted, %d finished, %d kills, %d drains, RSS %s",
                 time.monotonic() - began, len(submitter.expected), submitter.finished(),
                 len(churn.kills), len(churn.drains),
                 {k: round(v / report.MIB) for k, v in sampler.samples[-1].rss.items()})
    stop.set()
    await asyncio.gather(*running)
    await submitter.settle()
    await churn.settle()
    ended = time.monotonic()

    async def all_finished() -> bool:
        return submitter.finished() >= len(submitter.handles)

    try:
        await _until("every task finished", all_finished, args.finish_timeout)
    except TimeoutError as exc:
        log.error("%s: %d of %d finished", exc, submitter.finished(), len(submitter.handles))
    finish_s = time.monotonic() - ended
    stop_sampling.set()
    await sampling
    events = await _export(cli, run_dir / "events.jsonl")
    last = max(int(e["position"]) for e in events)
    boards = {o.name: await _board(o, last) for o in orchestrators}
    leaders = [o.name for o in orchestrators if await o.is_leader()]
    leader = leaders[0] if leaders else orchestrators[0].name
    verdict = check(events, submitter.expected, submitter.acknowledged, churn.kills,
                    boards[leader], await submitter.outcomes())
    for name, board in boards.items():
        if name != leader and board != boards[leader]:
            verdict.add("board_agrees_with_log", f"{name}'s board differs from the leader's "
                        f"{leader} on {len(set(board.items()) ^ set(boards[leader].items()))}")
    finished = submitter.finished()
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "settings": {k: v for k, v in vars(args).items() if k != "out"} | {"timings": TIMINGS},
        "churn_s": churn_s, "finish_s": round(finish_s, 1),
        "submitted": len(submitter.expected), "acknowledged": len(submitter.acknowledged),
        "finished": finished, "finished_per_s": finished / (churn_s + finish_s),
        "task_mix": dict(submitter.kinds), "submit_errors": dict(submitter.errors),
        "cancels": dict(submitter.cancels),
        "agent_kills": report.kill_figures(events, churn.kills),
        "drains": [{"agent_id": d["agent_id"], "drain": d["drain"][0],
                    "undrain": d.get("undrain", (None,))[0]} for d in churn.drains],
        "leader_kills": churn.leader_kills,
        "rss": report.rss_figures(sampler.samples),
        "log_lines": report.log_lines(o.log_path for o in orchestrators),
        "verdict": verdict.to_json(), "run_dir": str(run_dir),
    }
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(report.render(result, verdict))
    print(f"figures in {args.out}")
    if verdict.failed:
        print(f"FAILED: {', '.join(verdict.failed)} (logs and store in {run_dir})")
        return 1
    return 0


async def _export(cli: Cli, path: Path) -> list[dict[str, Any]]:
    """The whole log as `orchestrator events --json` exports it."""
    code, out, err = await cli.run("events", "--json", timeout=600)
    if code:
        raise RuntimeError(f"orchestrator events --json: exit {code}: {err.strip()}")
    await asyncio.to_thread(path.write_text, out)
    return [orjson.loads(line) for line in out.splitlines() if line.strip()]


async def _board(orch: Orchestrator, position: int) -> dict[str, str]:
    """Its task board once it has applied the log up to `position`."""
    await orch.get(f"/v1/tasks?limit=1&index={position - 1}&wait=30", timeout=40)
    return await orch.board()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s soak %(message)s")
    run_dir = Path(tempfile.mkdtemp(prefix="orch-soak-"))
    code = asyncio.run(soak(args, run_dir))
    if code == 0 and not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
