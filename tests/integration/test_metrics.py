"""/metrics of a real orchestrator under a small workload: each metric an alert in
deploy/prometheus/ reads moves as the workload says, and promtool accepts the scrape."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from sdk import AgentClient, TaskContext, TaskFailed
from tests.support import eventually, registration, request, subject

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape_text(orch: Any) -> str:
    async with aiohttp.ClientSession() as session, session.get(
        f"http://127.0.0.1:{orch.http_port}/metrics", timeout=aiohttp.ClientTimeout(total=30)
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }


async def scrape(orch: Any) -> Samples:
    return parse(await scrape_text(orch))


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def promtool() -> str:
    """promtool, which `make test` installs (Debian's `prometheus`): missing is a failure."""
    found = shutil.which("promtool")
    assert found, ("promtool is missing: `make promtool` installs it (apt-get install "
                   "prometheus)")
    return found


async def test_metrics_follow_a_small_workload(orchestrator, nc, names, nats_server):
    js = nc.jetstream()
    before = await scrape(orchestrator)
    assert value(before, "orch_leader") == 1
    assert value(before, "orch_leader_changes_total", change="acquired") == 1
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_open_fds", "process_max_fds"):
        assert (name, frozenset()) in before, name
    assert any(key[0] == "python_info" for key in before)
    for outcome in ("delivered", "accepted", "timed_out", "moved"):
        assert value(before, "orch_assignments_total", outcome=outcome) == 0, outcome

    # An agent that heartbeats but never accepts its first offer: it times out.
    await request(nc, subject(names, "register", "mute"),
                  registration("mute", capabilities=["special"], capacity=1))
    beating = True

    async def heartbeat() -> None:
        seq = 0
        while beating:
            seq += 1
            await js.publish(names.heartbeat("mute"),
                             orjson.dumps({"incarnation": 1, "seq": seq}))
            await asyncio.sleep(0.1)

    beats = asyncio.create_task(heartbeat())
    offers = await nc.subscribe(names.agent_tasks("mute"))
    try:
        await request(nc, subject(names, "task.submit"),
                      {"task_id": "held", "kind": "work", "requires": ["special"]})
        await offers.next_msg(timeout=10)  # not accepted
        await eventually(lambda: _moved(orchestrator, "timed_out", 1), timeout=15,
                         what="the unaccepted assignment timed out")
        # The next offer of the same task is accepted, and then the agent falls silent.
        offer = orjson.loads((await offers.next_msg(timeout=10)).data)
        reply = await request(nc, subject(names, "task.accept", "mute"),
                              {"task_id": "held", "token": offer["token"]})
        assert reply["ok"], reply
    finally:
        beating = False
        await beats
        await offers.unsubscribe()

    released = asyncio.Event()

    async def work(ctx: TaskContext) -> str:
        await released.wait()
        return "done"

    async def echo(ctx: TaskContext) -> Any:
        return ctx.payload

    async def fail(ctx: TaskContext) -> None:
        raise TaskFailed("no", retryable=False)

    rescuer = AgentClient("rescuer", ["special", "cpu"], capacity=4, nats_url=nats_server.url,
                          prefix=names.prefix,
                          handlers={"work": work, "echo": echo, "fail": fail})
    await rescuer.start()
    try:
        # The silent agent is declared dead; its task moves to the rescuer.
        await eventually(lambda: _on(orchestrator, "held", "rescuer", "running"), timeout=20,
                         what="the dead agent's task moved to the rescuer")
        await request(nc, subject(names, "task.submit"),
                      {"task_id": "ok-1", "kind": "echo", "payload": {"n": 1}})
        await request(nc, subject(names, "task.submit"),
                      {"task_id": "bad-1", "kind": "fail", "max_attempts": 1})
        refused = await request(nc, subject(names, "task.submit"), {"kind": ""})
        assert refused["ok"] is False
        await request(nc, subject(names, "task.submit"),
                      {"task_id": "stuck", "kind": "echo", "requires": ["nobody-has-it"]})
        await eventually(lambda: _status(orchestrator, "ok-1") == "completed"
                         and _status(orchestrator, "bad-1") == "dead_lettered",
                         what="one task completed, one dead-lettered")
        await asyncio.sleep(0.3)  # the stuck task waits
        await eventually(lambda: _caught_up(orchestrator), what="projections caught up")
        after = await scrape(orchestrator)
    finally:
        released.set()
        await rescuer.stop(deregister=False)

    # Tasks by status, and the wait of the oldest pending one.
    assert value(after, "orch_tasks", status="completed") == 1
    assert value(after, "orch_tasks", status="dead_lettered") == 1
    assert value(after, "orch_tasks", status="pending") == 1
    assert value(after, "orch_tasks", status="running") == 1
    assert value(after, "orch_tasks", status="cancelled") == 0  # present, at 0
    assert 0.3 <= value(after, "orch_task_oldest_pending_age_seconds") < 30
    assert value(before, "orch_task_oldest_pending_age_seconds") == 0
    assert value(after, "orch_tasks_finished_total", status="completed") == 1
    assert value(after, "orch_tasks_finished_total", status="dead_lettered") == 1
    assert value(after, "orch_agents", status="dead") == 1
    assert value(after, "orch_agents", status="healthy") == 1
    assert value(after, "orch_agents", status="suspect") == 0

    # Command latency, by command and outcome.
    submits = value(after, "orch_command_duration_seconds_count",
                    command="task.submit", outcome="ok")
    assert submits == 4
    assert value(after, "orch_command_duration_seconds_count", command="task.submit",
                 outcome="invalid_request") == 1
    assert 0 < value(after, "orch_command_duration_seconds_sum", command="task.submit",
                     outcome="ok") < submits * 5
    assert value(after, "orch_command_duration_seconds_count",
                 command="task.accept", outcome="ok") >= 1

    # Assignments: held (twice to mute, once moved to the rescuer), ok-1 and bad-1.
    assert value(after, "orch_assignments_total", outcome="timed_out") >= 1
    assert value(after, "orch_assignments_total", outcome="moved") == 1
    assert value(after, "orch_assignments_total", outcome="delivered") >= 5
    assert value(after, "orch_assignments_total", outcome="accepted") >= 4

    # The death and the failover: observed once, from the dead deadline.
    assert value(after, "orch_death_lateness_seconds_count") == 1
    assert 0 <= value(after, "orch_death_lateness_seconds_sum") < 10
    assert value(after, "orch_failover_seconds_count") == 1
    assert 0 <= value(after, "orch_failover_seconds_sum") < 10
    assert value(after, "orch_health_decisions_total", decision="dead") == 1

    # The log: appends timed, batches counted, the projections at the log's end.
    events = value(after, "orch_log_last_position")
    assert events == value(after, "orch_projection_position") > 0
    # Every event of the log, each once (the count is handed over at scrape time).
    assert value(after, "orch_events_applied_total") == events
    appended = value(after, "orch_event_append_seconds_count")
    assert appended >= events - value(before, "orch_log_last_position")
    assert value(after, "orch_event_append_batch_messages_sum") >= appended
    assert value(after, "orch_event_append_batch_messages_count") >= 1
    assert value(after, "orch_leader") == 1
    assert value(after, "process_cpu_seconds_total") > 0

    # Heartbeat consumer lag: none while the intake follows; heartbeats it has not
    # taken in count while it does not.
    assert value(after, "orch_heartbeat_consumer_lag_messages") == 0
    await orchestrator.intake.stop()
    try:
        for seq in range(1, 6):
            await js.publish(names.heartbeat("ghost"), orjson.dumps({"incarnation": 1,
                                                                     "seq": seq}))
        lagging = await scrape(orchestrator)
        assert value(lagging, "orch_heartbeat_consumer_lag_messages") >= 5
    finally:
        await orchestrator.intake.start()
    await eventually(lambda: _lag(orchestrator, 0), what="the intake caught up")

    # What promtool says of the exposition format and the names.
    text = await scrape_text(orchestrator)
    checked = await asyncio.to_thread(
        subprocess.run, [promtool(), "check", "metrics"], input=text, capture_output=True,
        text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_leadership_given_up_reads_zero(orchestrator):
    await orchestrator.jobs.cancel("leader-lease")  # no lease taken again meanwhile
    await orchestrator.lease.release()
    samples = await scrape(orchestrator)
    assert value(samples, "orch_leader") == 0
    assert value(samples, "orch_leader_changes_total", change="lost") == 1


async def _moved(orch: Any, outcome: str, at_least: float) -> bool:
    return value(await scrape(orch), "orch_assignments_total", outcome=outcome) >= at_least


async def _caught_up(orch: Any) -> bool:
    return bool(orch.runner.position.value == await orch.store.last_position())


async def _lag(orch: Any, expected: float) -> bool:
    return value(await scrape(orch), "orch_heartbeat_consumer_lag_messages") == expected


def _status(orch: Any, task_id: str) -> str | None:
    view = orch.board.get(task_id)
    return None if view is None else str(view.status)


def _on(orch: Any, task_id: str, agent_id: str, status: str) -> bool:
    view = orch.board.get(task_id)
    return view is not None and view.agent_id == agent_id and view.status == status
