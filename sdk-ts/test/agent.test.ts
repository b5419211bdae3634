// The agent against a real orchestrator (auth off here; test/auth.test.ts has it on):
// lifecycle, fencing, moved and cancelled tasks, failover, SIGTERM, an operator's
// deregister, and an orchestrator restart.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect } from "@nats-io/transport-node";

import { Agent, Client, CommandError, type TaskContext } from "../src/index.js";
import { Orchestrator, PREFIX, delay, eventually } from "./harness.js";
import { AgentProcess } from "./support.js";

let orch: Orchestrator;
let client: Client;
const agents: Agent[] = [];
const processes: AgentProcess[] = [];

function agent(id: string, handlers: Record<string, (ctx: TaskContext) => unknown>,
               extra: Partial<ConstructorParameters<typeof Agent>[0]> = {}): Agent {
  const made = new Agent({ id, handlers, natsUrl: orch.url, prefix: PREFIX, ...extra });
  agents.push(made);
  return made;
}

async function publish(subject: string, body: unknown): Promise<void> {
  const nc = await connect({ servers: orch.url });
  nc.publish(subject, new TextEncoder().encode(JSON.stringify(body)));
  await nc.drain();
}

before(async () => {
  orch = await Orchestrator.start("off");
  client = await Client.connect({ natsUrl: orch.url, identity: "tester", prefix: PREFIX });
});

after(async () => {
  for (const p of processes) p.kill();
  for (const a of agents) await a.stop({ deregister: false }).catch(() => {});
  await client?.close();
  await orch?.stop();
});

describe("agent", () => {
  test("lifecycle: registers, heartbeats, runs a task with progress, deregisters on stop", async () => {
    const seen: unknown[] = [];
    const a = agent("ts-life", {
      "life.echo": async (ctx) => {
        seen.push(ctx.payload);
        await ctx.progress(0.5);
        return { echoed: ctx.payload, attempt: ctx.attempt };
      },
    }, { capabilities: ["gpu"], labels: { zone: "z1" }, capacity: 2, progressEverySeconds: 2.5,
      services: [{ name: "web", address: "10.0.0.1", port: 80, tags: ["v1"] }] });
    const reply = await a.start();
    assert.equal(reply.incarnation, 1);
    assert.equal(reply.heartbeat_interval_s, 0.1);
    assert.equal(reply.credentials_ttl_s, null);
    await eventually(async () => (await orch.agent("ts-life"))?.status === "healthy",
      "healthy while heartbeating");
    await eventually(() => a.heartbeatsSent >= 3, "heartbeats at the interval given");
    const view = await orch.agent("ts-life");
    assert.deepEqual(view.capabilities, ["gpu"]);
    assert.deepEqual(view.labels, { zone: "z1" });
    assert.equal(view.capacity, 2);
    assert.equal(view.progress_every_s, 2.5); // its promise of progress, as registered
    const found = await a.catalogQuery({ service: "web" });
    assert.deepEqual(found.map((i) => [i.agent_id, i.address, i.port]), [["ts-life", "10.0.0.1", 80]]);

    const handle = await client.submit("life.echo", { n: 1, s: "één" });
    assert.deepEqual(await handle.result({ timeout: 15 }), { echoed: { n: 1, s: "één" }, attempt: 1 });
    assert.deepEqual(seen, [{ n: 1, s: "één" }]);
    await eventually(() => a.completed.includes(handle.taskId), "the complete answered");
    const history = (await orch.taskHistory(handle.taskId))
      .filter((e: any) => e.type !== "Progressed").map((e: any) => [e.type, e.identity]);
    assert.deepEqual(history, [["Submitted", "tester"], ["Assigned", "orchestrator"],
      ["Accepted", "ts-life"], ["Completed", "ts-life"]]);

    await a.stop();
    await eventually(async () => (await orch.agent("ts-life"))?.status === "left", "left");
  });

  test("catalog watch: the instances now, then again as agents come, change their services and go", async () => {
    const watcher = agent("ts-watcher", { "watch.none": () => null });
    await watcher.start();
    const seen: string[][] = [];
    const watching = (async () => {
      for await (const instances of watcher.watchCatalog("ts-web", { checkEveryS: 0.5 })) {
        seen.push(instances.map((i) => `${i.agent_id}:${i.port}:${i.healthy}`));
        if (seen.length === 4) return;
      }
    })();
    await eventually(() => seen.length === 1, "the first answer");
    assert.deepEqual(seen[0], []);
    const web = agent("ts-web-1", { "web.none": () => null },
      { services: [{ name: "ts-web", address: "10.0.0.2", port: 8080 }] });
    await web.start();
    await eventually(() => seen.length === 2, "the new instance");
    assert.deepEqual(seen[1], ["ts-web-1:8080:true"]);
    await web.declareServices([{ name: "ts-web", address: "10.0.0.2", port: 8081 }]);
    await eventually(() => seen.length === 3, "the changed port");
    assert.deepEqual(seen[2], ["ts-web-1:8081:true"]);
    await web.stop();
    await eventually(() => seen.length === 4, "the instance gone");
    assert.deepEqual(seen[3], []);
    await watching;
  });

  test("a second process with a live id is refused (conflict) and the first keeps it", async () => {
    const first = agent("ts-twice", { "twice.echo": (ctx) => ctx.payload });
    await first.start();
    const second = agent("ts-twice", { "twice.echo": () => "the second" });
    await assert.rejects(second.start(),
      (err: unknown) => err instanceof CommandError && err.code === "conflict");
    assert.equal(second.nc, null, "its connection closed");
    const handle = await client.submit("twice.echo", "the first");
    assert.equal(await handle.result({ timeout: 15 }), "the first");
    assert.equal((await orch.agent("ts-twice")).incarnation, 1);
  });

  test("fencing: an assignment whose token is stale is dropped, not retried, and work goes on", async () => {
    let runs = 0;
    const a = agent("ts-fence", { "fence.echo": (ctx) => { runs += 1; return ctx.payload; } });
    await a.start();
    const first = await client.submit("fence.echo", 1);
    assert.equal(await first.result({ timeout: 15 }), 1);
    const accepts: string[] = [];
    const request = a.request.bind(a);
    a.request = async (command, body) => {
      if (command === "task.accept") accepts.push(String(body.token));
      return request(command, body);
    };
    // The finished task handed out again with an old token (as a late or replayed
    // assignment would be): the accept is refused stale_token, and that is the end of it.
    await publish(`${PREFIX}.agent.ts-fence.tasks`, {
      task_id: first.taskId, kind: "fence.echo", payload: 1, requires: [], attempt: 1,
      token: "00000000deadbeef", timeout_s: 300,
    });
    await eventually(() => accepts.length === 1, "the stale accept sent");
    await delay(600);
    assert.deepEqual(accepts, ["00000000deadbeef"]);
    assert.equal(runs, 1, "the handler did not run for a stale assignment");
    assert.deepEqual(a.running, []);
    const second = await client.submit("fence.echo", 2);
    assert.equal(await second.result({ timeout: 15 }), 2);
    assert.equal((await orch.task(first.taskId)).status, "completed");
  });

  test("a revoke with an older token leaves the task running; with its token, aborts it", async () => {
    let aborted: string | null = null;
    let release: (value: unknown) => void = () => {};
    let token = "";
    const a = agent("ts-revoke", {
      "revoke.wait": (ctx) => new Promise((resolve) => {
        release = resolve;
        token = ctx.token;
        ctx.signal.addEventListener("abort", () => { aborted = String(ctx.signal.reason); });
      }),
    });
    await a.start();
    const handle = await client.submit("revoke.wait", null);
    await eventually(() => a.running.includes(handle.taskId), "the task running");
    assert.match(token, /^[0-9a-f]+$/);
    const control = `${PREFIX}.agent.ts-revoke.control`;
    await publish(control, { type: "revoke", reason: "moved", task_id: handle.taskId,
      token: "0123456789abcdef", incarnation: null });
    await delay(300);
    assert.equal(aborted, null, "an older assignment's revoke is not this one's");
    await publish(control, { type: "revoke", reason: "moved", task_id: handle.taskId, token,
      incarnation: null });
    await eventually(() => aborted !== null, "the handler's signal aborted");
    assert.match(aborted!, /revoke: moved/);
    release("too late");
    await eventually(() => !a.running.includes(handle.taskId), "the task dropped");
    await delay(300);
    assert.equal((await orch.task(handle.taskId)).status, "running", "nothing reported");
    await client.cancel(handle.taskId);
  });

  test("failover: the agent dies, the task moves and completes elsewhere", async () => {
    const dying = AgentProcess.start({ NATS_URL: orch.url, AGENT_ID: "ts-dies",
      ORCH_PREFIX: PREFIX, KINDS: "hang.move" });
    processes.push(dying);
    await eventually(() => dying.said("registered"), `the agent process registered\n${dying.output}`);
    const handle = await client.submit("hang.move", { n: 7 });
    await eventually(() => dying.said("started"), "the task started on the first agent");
    dying.kill("SIGKILL");
    const b = agent("ts-takes-over", { "hang.move": (ctx) => ({ by: "ts-takes-over", ...ctx.payload as object }) });
    await b.start();
    assert.deepEqual(await handle.result({ timeout: 20 }), { by: "ts-takes-over", n: 7 });
    const task = await orch.task(handle.taskId);
    assert.equal(task.agent_id, "ts-takes-over");
    assert.ok(task.attempt >= 2, JSON.stringify(task));
  });

  test("SIGTERM: runUntilStopped deregisters and the process exits 0", async () => {
    const p = AgentProcess.start({ NATS_URL: orch.url, AGENT_ID: "ts-term", ORCH_PREFIX: PREFIX,
      KINDS: "term.echo" });
    processes.push(p);
    await eventually(() => p.said("registered"), `registered\n${p.output}`);
    await eventually(async () => (await orch.agent("ts-term"))?.status === "healthy", "healthy");
    p.kill("SIGTERM");
    assert.equal(await p.exited, 0, p.output);
    assert.equal(p.said("stopped")!.deregistered_by_orchestrator, null);
    await eventually(async () => (await orch.agent("ts-term"))?.status === "left", "left");
  });

  test("an operator's deregister stops the agent; runUntilStopped returns", async () => {
    const a = agent("ts-removed", { "removed.echo": (ctx) => ctx.payload });
    await a.start();
    const running = a.runUntilStopped({ signals: [] });
    const reply = await orch.admin("admin.agent.deregister", { agent_id: "ts-removed" });
    assert.ok(reply.ok, JSON.stringify(reply));
    await running;
    assert.equal(a.deregisteredByOrchestrator?.type, "deregistered");
    assert.equal(a.nc, null);
  });

  test("a task that moved off a silent agent: its signal is aborted, the other agent completes it", async () => {
    const started: string[] = [];
    const aborted: string[] = [];
    let release: () => void = () => {};
    const released = new Promise<void>((r) => { release = r; });
    const worker = (id: string) => agent(id, {
      "moved.work": async (ctx) => {
        started.push(id);
        ctx.signal.addEventListener("abort", () => aborted.push(id));
        await released;
        return id;
      },
    });
    const first = worker("ts-silent");
    await first.start();
    const handle = await client.submit("moved.work", null);
    await eventually(() => started.length === 1, "the first at work");
    const second = worker("ts-other");
    await second.start();
    first.heartbeatsPaused = true; // alive and working, but silent: declared dead
    await eventually(() => started.length === 2, "the task moved to the other agent", 20_000);
    assert.deepEqual(started, ["ts-silent", "ts-other"]);
    await eventually(() => aborted.includes("ts-silent"), "the first told to stop");
    release();
    assert.equal(await handle.result({ timeout: 15 }), "ts-other");
    const history = await orch.taskHistory(handle.taskId);
    assert.equal(history.filter((e: any) => e.type === "Completed").length, 1);
    assert.equal(history.filter((e: any) => e.type === "StaleResultRefused").length, 0,
      "the first reported nothing once told to stop");
    first.heartbeatsPaused = false;
  });

  test("fencing: given the task again after its accept was lost, it goes on under the newest token", async () => {
    const tokens: string[] = [];
    let release: () => void = () => {};
    const released = new Promise<void>((r) => { release = r; });
    const a = agent("ts-again", {
      "again.slow": async (ctx) => { tokens.push(ctx.token); await released; return "done"; },
    });
    await a.start();
    const internals = a as unknown as { report: (c: string, b: object, s: AbortSignal) => Promise<object> };
    const report = internals.report.bind(a);
    let lost = 0;
    internals.report = async (command, body, signal) => {
      if (command === "task.accept" && lost++ === 0) return { ok: true }; // lost on the way
      return report(command, body, signal);
    };
    const handle = await client.submit("again.slow", null);
    await eventually(async () => (await orch.task(handle.taskId))?.status === "running",
      "accepted under the second assignment", 20_000);
    assert.equal((await orch.task(handle.taskId)).attempt, 2);
    release();
    assert.equal(await handle.result({ timeout: 15 }), "done");
    assert.equal(tokens.length, 1, "one run of the handler, reported under the new token");
  });

  test("reconnects forever; a report made while the orchestrator and NATS are down is sent once they are back", async () => {
    let release: () => void = () => {};
    const released = new Promise<void>((r) => { release = r; });
    let runs = 0;
    const a = agent("ts-restart", {
      "restart.hold": async (ctx) => { if (runs++ === 0) await released; return ctx.payload; },
      "restart.echo": (ctx) => ctx.payload,
    });
    await a.start();
    const held = await client.submit("restart.hold", "held");
    await eventually(() => a.running.includes(held.taskId), "the task running");
    await orch.down();
    release(); // its complete finds nobody: retried until answered
    await delay(1500); // longer than the orchestrator's dead_after
    await orch.up();
    await eventually(() => a.reconnects >= 1, "the agent reconnected", 20_000);
    assert.equal(await held.result({ timeout: 20 }), "held");
    const afterRestart = await client.submit("restart.echo", "after");
    assert.equal(await afterRestart.result({ timeout: 20 }), "after");
    await eventually(async () => (await orch.agent("ts-restart"))?.status === "healthy",
      "healthy again");
  });
});
