// The client against a real orchestrator (auth off): submit and await, many at once
// with results in the order they finish, partial output and progress, cancel, a task
// dead-lettered, get, idempotent submit, the back-off of an overloaded submit, schedules.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Agent, Client, CommandError, TaskCancelled, TaskDeadLettered, TaskFailed,
  TimeoutError, type TaskContext } from "../src/index.js";
import { Orchestrator, PREFIX, delay, eventually } from "./harness.js";

let orch: Orchestrator;
let client: Client;
let worker: Agent;
let cancelled: string[] = [];
const gates = new Map<string, (value: unknown) => void>();

const text = (chunks: Uint8Array[]) => chunks.map((c) => new TextDecoder().decode(c)).join("");

before(async () => {
  orch = await Orchestrator.start("off");
  worker = new Agent({
    id: "ts-worker", natsUrl: orch.url, prefix: PREFIX, capacity: 20,
    handlers: {
      echo: (ctx: TaskContext) => ctx.payload,
      sleep: async (ctx: TaskContext) => { await delay((ctx.payload as { ms: number }).ms); return ctx.payload; },
      stream: async (ctx: TaskContext) => {
        await ctx.progress(0.25);
        for (const word of ["alpha ", "beta ", "gamma"]) await ctx.stream(word);
        await ctx.progress(1.0);
        await delay(100);
        return "streamed";
      },
      gate: (ctx: TaskContext) => new Promise((resolve) => {
        gates.set(ctx.taskId, resolve);
        ctx.signal.addEventListener("abort", () => cancelled.push(ctx.taskId));
      }),
      broken: () => { throw new TaskFailed("no such file", false); },
    },
  });
  await worker.start();
  client = await Client.connect({ natsUrl: orch.url, identity: "ts-client", prefix: PREFIX });
});

after(async () => {
  await client?.close();
  await worker?.stop({ deregister: false });
  await orch?.stop();
});

describe("client", () => {
  test("submit and await a result", async () => {
    const handle = await client.submit("echo", { q: "hi", n: [1, 2.5] });
    assert.match(handle.taskId, /^t-[A-Za-z0-9_-]{12}$/);
    assert.deepEqual(await handle.result({ timeout: 15 }), { q: "hi", n: [1, 2.5] });
    assert.ok(handle.done());
    const got = await client.get(handle.taskId);
    assert.equal(got.status, "completed");
    assert.deepEqual(got.result, { q: "hi", n: [1, 2.5] });
  });

  test("submitMany; results() yields each once, in the order they finish", async () => {
    const handles = await client.submitMany([
      { kind: "sleep", payload: { ms: 900 } },
      { kind: "sleep", payload: { ms: 10 } },
      { kind: "sleep", payload: { ms: 450 } },
    ]);
    const order: number[] = [];
    for await (const outcome of client.results(handles, { timeout: 20 })) {
      order.push((outcome.value() as { ms: number }).ms);
    }
    assert.deepEqual(order, [10, 450, 900]);
    const many = await client.submitMany(Array.from({ length: 40 }, (_, n) => ({ kind: "echo", payload: n })));
    const values = [];
    for await (const outcome of client.results(many, { timeout: 30 })) values.push(outcome.value());
    assert.deepEqual(values.map(Number).sort((a, b) => a - b), Array.from({ length: 40 }, (_, n) => n));
  });

  test("stream(): partial output in order, and progress", async () => {
    const handle = await client.submit("stream", null);
    const chunks: Uint8Array[] = [];
    for await (const chunk of handle.stream()) chunks.push(chunk);
    assert.equal(text(chunks), "alpha beta gamma");
    assert.equal(await handle.result({ timeout: 10 }), "streamed");
    assert.equal(handle.progress, 1.0);
  });

  test("cancel: the handler's signal is aborted and result() throws TaskCancelled", async () => {
    const handle = await client.submit("gate", null);
    await eventually(() => gates.has(handle.taskId), "the task running");
    assert.equal(await client.cancel(handle.taskId, "not needed"), "cancelled");
    await assert.rejects(handle.result({ timeout: 10 }), (err: unknown) => {
      assert.ok(err instanceof TaskCancelled);
      assert.equal(err.outcome.error, "not needed");
      return true;
    });
    await eventually(() => cancelled.includes(handle.taskId), "the handler told to stop");
  });

  test("a handler's TaskFailed(retryable false) dead-letters: TaskDeadLettered", async () => {
    const handle = await client.submit("broken", null);
    await assert.rejects(handle.result({ timeout: 10 }), (err: unknown) => {
      assert.ok(err instanceof TaskDeadLettered);
      assert.equal(err.outcome.error, "no such file");
      return true;
    });
  });

  test("result({timeout}) throws TimeoutError; get() of an unknown task is not_found", async () => {
    const handle = await client.submit("gate", null);
    await assert.rejects(handle.result({ timeout: 0.2 }), TimeoutError);
    await eventually(() => gates.has(handle.taskId), "running");
    gates.get(handle.taskId)!("late");
    assert.equal(await handle.result({ timeout: 10 }), "late");
    await assert.rejects(client.get("t-never-submitted"),
      (err: unknown) => err instanceof CommandError && err.code === "not_found");
  });

  test("a submit with its task id again is the same task; a handle on it gets the result", async () => {
    const first = await client.submit("echo", 41, { taskId: "ts-same-1" });
    assert.equal(await first.result({ timeout: 10 }), 41);
    const again = await client.submit("echo", 41, { taskId: "ts-same-1" });
    assert.equal(await again.result({ timeout: 10 }), 41);
    await assert.rejects(client.submit("echo", 42, { taskId: "ts-same-1" }),
      (err: unknown) => err instanceof CommandError && err.code === "conflict");
    const other = await Client.connect({ natsUrl: orch.url, identity: "ts-client", prefix: PREFIX });
    try {
      assert.equal(await other.handle("ts-same-1").result({ timeout: 10 }), 41);
    } finally {
      await other.close();
    }
  });

  test("overloaded: the submit waits error.retry_after_s and is admitted once there is room", async () => {
    const reply = await orch.admin("admin.limits.set",
      { scope: "submitter", name: "ts-busy", max_unfinished: 1 });
    assert.ok(reply.ok, JSON.stringify(reply));
    const busy = await Client.connect({ natsUrl: orch.url, identity: "ts-busy", prefix: PREFIX });
    try {
      const first = await busy.submit("gate", null);
      await eventually(() => gates.has(first.taskId), "the first running");
      const started = Date.now();
      let admitted = 0;
      const second = busy.submit("echo", "second").then((h) => { admitted = Date.now(); return h; });
      await delay(700);
      assert.equal(admitted, 0, "refused as overloaded while the first is unfinished");
      gates.get(first.taskId)!("first");
      assert.equal(await first.result({ timeout: 10 }), "first");
      assert.equal(await (await second).result({ timeout: 10 }), "second");
      assert.ok(admitted - started >= 700, `admitted after ${admitted - started} ms`);
      busy.overloadPatienceS = 0.5;
      const third = await busy.submit("gate", null);
      await assert.rejects(busy.submit("echo", "fourth"),
        (err: unknown) => err instanceof CommandError && err.code === "overloaded"
          && err.retryAfterS !== null);
      await eventually(() => gates.has(third.taskId), "the third running");
      gates.get(third.taskId)!("third");
      await third.result({ timeout: 10 });
    } finally {
      await busy.close();
    }
  });

  test("a delayed task waits as scheduled, then runs", async () => {
    const started = Date.now();
    const handle = await client.submit("echo", "later", { delayS: 1 });
    assert.equal((await client.get(handle.taskId)).status, "scheduled");
    assert.equal(await handle.result({ timeout: 15 }), "later");
    assert.ok(Date.now() - started >= 900, `ran after ${Date.now() - started} ms`);
    const at = await client.submit("echo", "at", { notBefore: Date.now() / 1000 + 0.5 });
    assert.equal(await at.result({ timeout: 15 }), "at");
  });

  test("schedules: create, list, pause, resume, delete", async () => {
    const made = await client.schedule("ts-nightly", { kind: "echo", cron: "0 3 * * *", payload: { r: 1 } });
    assert.equal(made.name, "ts-nightly");
    assert.equal(made.owner, "ts-client");
    assert.equal(made.status, "active");
    assert.ok(made.nextDue !== null);
    assert.deepEqual((await client.schedules()).map((s) => s.name), ["ts-nightly"]);
    assert.equal((await client.pauseSchedule("ts-nightly")).status, "paused");
    assert.equal((await client.resumeSchedule("ts-nightly")).status, "active");
    assert.equal((await client.unschedule("ts-nightly")).status, "deleted");
    assert.deepEqual(await client.schedules(), []);
  });
});
