// The client half of the SDK: programs that give the fleet its work submit tasks, await
// their results or take them as they finish, stream partial output, and cancel them.
// The twin of the Python SDK's sdk/client.py: the same names in camelCase, the same
// semantics.
//
// Results are pushed, never polled: a finished task's outcome is published on
// `<prefix>.result.<identity>.<task_id>` and a running task's feed on
// `<prefix>.stream.<identity>.<task_id>.<agent_id>`, which no other identity may
// subscribe to, and the client subscribes to both before it submits anything. What
// finished while the client was away is asked for once it is connected again
// (`task.results`); each task's first outcome is kept and later copies dropped.

import { randomBytes } from "node:crypto";
import type { Msg, NatsConnection } from "@nats-io/transport-node";

import { RENEW_AT } from "./agent.js";
import { answer, defaultLogger, noAnswer, open, sleep, type Logger } from "./connection.js";
import { readSeed } from "./credentials.js";
import { CommandError, TimeoutError } from "./errors.js";
import { PROGRESS_HEADER, STREAM_SEQ_HEADER, Subjects, checkIdentifier, decode, encode,
  type JsonObject } from "./protocol.js";
import { Deferred, FINISHED, Feed, TaskHandle, TaskOutcome } from "./results.js";
import * as schedules from "./schedules.js";

export const TASK_SUBMIT = "task.submit";
export const TASK_CANCEL = "task.cancel";
export const TASK_RESULTS = "task.results";
/** Task ids per task.results request (the server's bound). */
export const MAX_RESULTS_ASKED = 100;
/** Submits in flight at once in submitMany. */
export const SUBMIT_MANY_IN_FLIGHT = 256;
export const REQUEST_TIMEOUT_MS = 10_000;
/** Tries of a request whose reply was lost (a timeout, no responders while an
 * orchestrator restarts): safe, as a submit with its task id is idempotent. */
export const REQUEST_ATTEMPTS = 5;
/** How long a submit refused as `overloaded` keeps trying, in all (seconds). */
export const OVERLOAD_PATIENCE_S = 300;
/** Credentials are renewed at RENEW_AT (the agent's rule) of their lifetime, the
 * orchestrator's ORCH_AUTH_JWT_TTL: 300 s unless set. */
export const DEFAULT_CREDENTIALS_TTL_S = 300;

export interface ClientConnectOptions {
  /** nats://host:port, comma-separated for several (default nats://127.0.0.1:4222). */
  natsUrl?: string;
  /** The name it connects as (`orchestrator identity create NAME --role submitter`). */
  identity: string;
  /** The subject prefix (default `orch`). */
  prefix?: string;
  /** Its nkey seed (`SU...`), or the path of a file holding it: needed with auth on. */
  credentials?: string;
  /** The connection's name (default: the identity). */
  name?: string;
  /** With credentials: their lifetime, renewed at 70 % of it (default ORCH_AUTH_JWT_TTL
   * from the environment, else 300 s, the orchestrator's default). */
  credentialsTtlS?: number;
  logger?: Logger;
}

export interface TaskOptions {
  /** Made here when not given (72 random bits), so a retried submit is the same task. */
  taskId?: string;
  requires?: string[];
  priority?: number;
  maxAttempts?: number;
  timeoutS?: number;
  /** Wait this long (or until `notBefore`, epoch seconds) before it is placed. */
  delayS?: number;
  notBefore?: number;
  concurrencyKey?: string;
  fairnessKey?: string;
  selector?: Record<string, string>;
  prefer?: Record<string, string>;
}

export interface TaskSpec extends TaskOptions {
  kind: string;
  payload?: unknown;
}

export class Client {
  readonly subjects: Subjects;
  /** How long a submit refused as overloaded keeps trying, in all (seconds). */
  overloadPatienceS = OVERLOAD_PATIENCE_S;
  private readonly waiting = new Map<string, Deferred<TaskOutcome>>();
  private readonly feeds = new Map<string, Feed>();
  private catchingUp: Promise<void> | null = null;
  private readonly log: Logger;
  private renewing: NodeJS.Timeout | null = null;
  /** Renewals of its credentials (reconnects it asked for). */
  renewals = 0;

  /** Set by connect: resolves once the connection is up (see connection.ts). */
  ready: (timeoutMs: number) => Promise<void> = () => Promise.resolve();
  private expirations: () => number = () => 0;
  /** How many times the server cut it off because its credentials expired before they
   * were renewed (0 while renewal keeps ahead of them). */
  get credentialsExpired(): number { return this.expirations(); }

  constructor(readonly nc: NatsConnection, readonly identity: string, prefix = "orch",
              logger?: Logger) {
    this.subjects = new Subjects(prefix);
    this.log = logger ?? defaultLogger(`client ${identity}`);
  }

  /** Connect as `identity` (with its nkey seed when the orchestrator runs with auth on),
   * reconnecting forever. With credentials, they are renewed before they expire, as an
   * agent does: a reconnect at RENEW_AT of `credentialsTtlS`; a shorter lifetime is
   * still renewed, by the reconnect the server asks for when they expire. Results are
   * caught up after every reconnect. */
  static async connect(options: ClientConnectOptions): Promise<Client> {
    const identity = checkIdentifier(options.identity, "identity");
    const prefix = options.prefix ?? "orch";
    let seed = options.credentials;
    if (seed && !seed.startsWith("SU")) seed = readSeed(seed);
    const logger = options.logger ?? defaultLogger(`client ${identity}`);
    const { nc, ready, expirations } = await open({
      servers: options.natsUrl ?? "nats://127.0.0.1:4222", name: options.name ?? identity,
      inboxPrefix: new Subjects(prefix).inboxPrefix(identity), seed, log: logger,
    });
    const client = new Client(nc, identity, prefix, logger);
    client.ready = ready;
    client.expirations = expirations;
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === "reconnect") {
          logger.debug("reconnected");
          client.catchUp();
        }
      }
    })().catch(() => {});
    await client.listen();
    if (seed) {
      const ttl = options.credentialsTtlS
        || Number(process.env.ORCH_AUTH_JWT_TTL || DEFAULT_CREDENTIALS_TTL_S);
      client.renewEvery(ttl * RENEW_AT * 1000);
    }
    return client;
  }

  /** Reconnect every `everyMs` while open: the callout issues fresh credentials. */
  private renewEvery(everyMs: number): void {
    this.renewing = setInterval(() => {
      if (this.nc.isClosed()) return;
      this.log.debug("renewing credentials");
      this.nc.reconnect().then(() => { this.renewals += 1; },
        (err) => this.log.debug(`renewal reconnect failed: ${String(err)}`));
    }, everyMs);
    this.renewing.unref(); // a program that is done does not wait for it
  }

  /** Take this identity's outcomes and feeds (connect does it). */
  async listen(): Promise<void> {
    this.nc.subscribe(this.subjects.results(this.identity), {
      callback: (err, msg) => { if (!err) this.onOutcome(msg); },
    });
    this.nc.subscribe(this.subjects.feeds(this.identity), {
      callback: (err, msg) => { if (!err) this.onFeed(msg); },
    });
    await this.nc.flush(); // subscribed before any task can finish
  }

  async close(): Promise<void> {
    if (this.renewing !== null) clearInterval(this.renewing);
    this.renewing = null;
    if (this.nc.isClosed()) return;
    try {
      await this.nc.drain(); // what was published goes out first
    } catch (err) {
      this.log.debug(`closed with an error: ${String(err)}`);
      await this.nc.close().catch(() => {});
    }
  }

  async [Symbol.asyncDispose](): Promise<void> { await this.close(); }

  // --- submitting ------------------------------------------------------------------

  /** Submit a task; its handle. Refused as `overloaded`, it waits as told and submits
   * again, for at most `overloadPatienceS` in all. */
  async submit(kind: string, payload: unknown = null, options: TaskOptions = {}):
      Promise<TaskHandle> {
    const taskId = checkIdentifier(options.taskId ?? `t-${randomBytes(9).toString("base64url")}`,
      "taskId");
    const body: JsonObject = {
      task_id: taskId, kind, payload: payload ?? null, requires: options.requires ?? [],
      priority: options.priority ?? 0, max_attempts: options.maxAttempts ?? 3,
      timeout_s: options.timeoutS ?? 300,
    };
    if (options.delayS !== undefined) body.delay_s = options.delayS;
    if (options.notBefore !== undefined) body.not_before = options.notBefore;
    if (options.concurrencyKey !== undefined) body.concurrency_key = options.concurrencyKey;
    if (options.fairnessKey !== undefined) body.fairness_key = options.fairnessKey;
    if (options.selector && Object.keys(options.selector).length) body.selector = { ...options.selector };
    if (options.prefer && Object.keys(options.prefer).length) body.prefer = { ...options.prefer };
    const handle = this.handle(taskId, { ask: false }); // waiting before it can finish
    let reply: JsonObject;
    try {
      reply = await this.request(TASK_SUBMIT, body);
    } catch (err) {
      this.forget(taskId);
      throw err;
    }
    if (FINISHED.includes(String(reply.status))) this.catchUp(); // finished before: no push
    return handle;
  }

  /** Submit each of `tasks` many at once; the handles in the order given. The first
   * refusal is thrown once every submit has been answered. */
  async submitMany(tasks: Iterable<TaskSpec>): Promise<TaskHandle[]> {
    const specs = [...tasks];
    const handles: (TaskHandle | undefined)[] = new Array(specs.length);
    let failure: { err: unknown } | null = null;
    let next = 0;
    const worker = async () => {
      while (next < specs.length) {
        const at = next++;
        const { kind, payload, ...options } = specs[at]!;
        try {
          handles[at] = await this.submit(kind, payload, options);
        } catch (err) {
          failure ??= { err };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(SUBMIT_MANY_IN_FLIGHT, specs.length) }, worker));
    if (failure) throw (failure as { err: unknown }).err;
    return handles as TaskHandle[];
  }

  /** Cancel a task of this client's identity; its status after the command. */
  async cancel(taskId: string, reason = "cancelled by request"): Promise<string> {
    const reply = await this.request(TASK_CANCEL, { task_id: taskId, reason });
    return String(reply.status);
  }

  /** A task's state now (finished or not); CommandError `not_found` for a task that is
   * unknown or another identity's. */
  async get(taskId: string): Promise<TaskOutcome> {
    const [found] = await this.getMany([taskId]);
    return found!;
  }

  async getMany(taskIds: Iterable<string>): Promise<TaskOutcome[]> {
    const ids = [...new Set(taskIds)];
    const found = new Map<string, TaskOutcome>();
    for (let start = 0; start < ids.length; start += MAX_RESULTS_ASKED) {
      const reply = await this.request(TASK_RESULTS,
        { task_ids: ids.slice(start, start + MAX_RESULTS_ASKED) });
      for (const body of reply.tasks as JsonObject[]) {
        const outcome = TaskOutcome.parse(body);
        found.set(outcome.taskId, outcome);
      }
      const unknown = reply.unknown as string[];
      if (unknown.length) {
        throw new CommandError("not_found", `no task of ${this.identity}: ${unknown.slice(0, 5).join(", ")}`);
      }
    }
    return ids.map((id) => found.get(id)!);
  }

  // --- results -----------------------------------------------------------------------

  /** A handle on a task this identity submitted (here or in another process): its
   * result arrives when it finishes, or at once if it has (`ask`). */
  handle(taskId: string, options: { ask?: boolean } = {}): TaskHandle {
    let future = this.waiting.get(taskId);
    if (future === undefined) {
      future = new Deferred<TaskOutcome>();
      this.waiting.set(taskId, future);
      this.feeds.set(taskId, new Feed());
      if (options.ask ?? true) this.catchUp();
    }
    return new TaskHandle(this, taskId, future, this.feeds.get(taskId) ?? new Feed());
  }

  /** The outcomes of `handles` in the order they finish (each once). A task that did
   * not complete is yielded too: `outcome.value()` throws its error. */
  async *results(handles: Iterable<TaskHandle>, options: { timeout?: number } = {}):
      AsyncGenerator<TaskOutcome> {
    const pending = new Set<TaskHandle>(handles);
    const deadline = options.timeout === undefined ? null : Date.now() + options.timeout * 1000;
    while (pending.size) {
      let done = [...pending].filter((h) => h.future.settled);
      if (!done.length) {
        const left = deadline === null ? null : Math.max(0, deadline - Date.now());
        let timer: NodeJS.Timeout | undefined;
        const races: Promise<unknown>[] = [...pending].map((h) => h.future.promise);
        if (left !== null) races.push(new Promise((resolve) => { timer = setTimeout(resolve, left); }));
        await Promise.race(races).catch(() => {});
        clearTimeout(timer);
        done = [...pending].filter((h) => h.future.settled);
        if (!done.length) {
          throw new TimeoutError(`${pending.size} tasks not finished in ${options.timeout} s`);
        }
      }
      done.sort((a, b) => a.future.value!.position - b.future.value!.position);
      for (const handle of done) {
        pending.delete(handle);
        yield handle.future.value!;
      }
    }
  }

  private onOutcome(msg: Msg): void {
    let outcome: TaskOutcome;
    try {
      outcome = TaskOutcome.parse(decode(msg.data) as JsonObject);
    } catch {
      this.log.warn(`unreadable task outcome subject=${msg.subject}`);
      return;
    }
    this.settle(outcome);
  }

  private onFeed(msg: Msg): void {
    // <prefix>.stream.<identity>.<task_id>.<agent_id>
    const tokens = msg.subject.split(".");
    const feed = this.feeds.get(tokens[tokens.length - 2]!);
    if (feed === undefined) return; // a task not awaited here (or finished)
    const progress = msg.headers?.get(PROGRESS_HEADER);
    if (progress) {
      const value = Number(progress);
      if (Number.isNaN(value)) return;
      feed.progress = value;
    } else {
      const seq = Number.parseInt(msg.headers?.get(STREAM_SEQ_HEADER) ?? "", 10);
      if (Number.isNaN(seq)) {
        this.log.warn(`unreadable task feed message subject=${msg.subject}`);
        return;
      }
      if (seq >= feed.next) feed.chunks.set(seq, msg.data);
    }
    feed.changed();
  }

  private settle(outcome: TaskOutcome): void {
    if (!outcome.finished) return;
    const future = this.waiting.get(outcome.taskId);
    this.waiting.delete(outcome.taskId); // the handle keeps what it needs
    const feed = this.feeds.get(outcome.taskId);
    this.feeds.delete(outcome.taskId);
    future?.resolve(outcome); // the first copy; later ones are dropped
    feed?.changed();
  }

  private forget(taskId: string): void {
    this.feeds.delete(taskId);
    const future = this.waiting.get(taskId);
    this.waiting.delete(taskId);
    future?.reject(new Error(`task ${taskId} was not submitted`));
  }

  /** Ask once for the outcomes of the tasks still awaited (what finished while the
   * client was away, or before it asked). */
  private catchUp(): void {
    if (this.catchingUp !== null) return;
    this.catchingUp = (async () => {
      await Promise.resolve(); // after the handles being made in this turn
      try {
        await this.askPending();
      } finally {
        this.catchingUp = null;
      }
    })();
  }

  private async askPending(): Promise<void> {
    const awaited = [...this.waiting.entries()].filter(([, f]) => !f.settled).map(([id]) => id);
    for (let start = 0; start < awaited.length; start += MAX_RESULTS_ASKED) {
      let reply: JsonObject;
      try {
        reply = await this.request(TASK_RESULTS,
          { task_ids: awaited.slice(start, start + MAX_RESULTS_ASKED) });
      } catch (err) {
        this.log.info(`results not caught up: ${String(err)}`);
        return;
      }
      const bodies = [...(reply.tasks as JsonObject[])]
        .sort((a, b) => Number(a.position ?? 0) - Number(b.position ?? 0));
      for (const body of bodies) this.settle(TaskOutcome.parse(body));
    }
  }

  /** One command, retried while no reply comes (safe: each is idempotent by the task
   * id), and while the orchestrator is overloaded, as long as it says, for at most
   * `overloadPatienceS`; CommandError with the protocol's code for a refusal. */
  async request(command: string, body: JsonObject): Promise<JsonObject> {
    let deadline: number | null = null;
    for (;;) {
      try {
        return await this.requestOnce(command, body);
      } catch (err) {
        if (!(err instanceof CommandError) || err.code !== "overloaded") throw err;
        const now = Date.now();
        deadline ??= now + this.overloadPatienceS * 1000;
        // Spread out: many clients told the same wait do not all come back at once.
        const wait = (err.retryAfterS ?? 1) * (1 + Math.random() / 2) * 1000;
        if (now + wait > deadline) throw err;
        this.log.info(`overloaded; submitting again in ${(wait / 1000).toFixed(2)}s`);
        await sleep(wait);
      }
    }
  }

  private async requestOnce(command: string, body: JsonObject): Promise<JsonObject> {
    const subject = this.subjects.clientCommand(command, this.identity);
    const data = encode(body);
    let delay = 100;
    for (let attempt = 1; ; attempt++) {
      let msg: Msg;
      try {
        await this.ready(REQUEST_TIMEOUT_MS);
        msg = await this.nc.request(subject, data, { timeout: REQUEST_TIMEOUT_MS });
      } catch (err) {
        if (!noAnswer(err) || attempt >= REQUEST_ATTEMPTS) throw err;
        this.log.debug(`no answer to ${command} (attempt ${attempt}): ${String(err)}`);
        await sleep(delay);
        delay = Math.min(delay * 2, 2000);
        continue;
      }
      try {
        return answer(msg);
      } catch (err) {
        if (err instanceof CommandError && err.code === "unavailable" && attempt < REQUEST_ATTEMPTS) {
          await sleep(delay);
          delay = Math.min(delay * 2, 2000);
          continue;
        }
        throw err;
      }
    }
  }

  // --- schedules ---------------------------------------------------------------------

  /** Create (with `replace: true`, replace) a schedule. */
  async schedule(name: string, options: schedules.ScheduleOptions): Promise<schedules.Schedule> {
    return schedules.create((c, b) => this.request(c, b), name, options);
  }

  async unschedule(name: string): Promise<schedules.Schedule> {
    return schedules.act((c, b) => this.request(c, b), schedules.SCHEDULE_DELETE, name);
  }

  async pauseSchedule(name: string): Promise<schedules.Schedule> {
    return schedules.act((c, b) => this.request(c, b), schedules.SCHEDULE_PAUSE, name);
  }

  async resumeSchedule(name: string): Promise<schedules.Schedule> {
    return schedules.act((c, b) => this.request(c, b), schedules.SCHEDULE_RESUME, name);
  }

  async schedules(): Promise<schedules.Schedule[]> {
    return schedules.listAll((c, b) => this.request(c, b));
  }
}
