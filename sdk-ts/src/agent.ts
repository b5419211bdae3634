// An agent: enrolls (auth on), registers, heartbeats on JetStream, runs the tasks it is
// given with a handler per kind and reports them under their fencing token, obeys
// control messages, renews its credentials, and leaves cleanly. The TypeScript twin of
// the Python SDK's AgentClient (sdk/agent.py, sdk/tasks.py).

import { randomUUID } from "node:crypto";
import { jetstream } from "@nats-io/jetstream";
import { headers, type Msg, type NatsConnection } from "@nats-io/transport-node";

import { answer, defaultLogger, noAnswer, open, sleep, type Logger } from "./connection.js";
import * as catalog from "./catalog.js";
import { loadOrCreateSeed } from "./credentials.js";
import { CommandError, TaskFailed } from "./errors.js";
import {
  ASSIGNMENTS, DEREGISTER, REGISTER, SERVICES, STREAM_SEQ_HEADER, Subjects,
  TASK_ACCEPT, TASK_COMPLETE, TASK_FAIL, TASK_PROGRESS, checkIdentifier, decode, encode,
  parseAssignment, parseControl, serviceDeclaration,
  type Assignment, type ControlMessage, type JsonObject, type ServiceDeclaration,
} from "./protocol.js";

/** Credentials are renewed (by reconnecting: the auth callout issues new ones) after
 * this share of their lifetime, well before the server would cut the connection. */
export const RENEW_AT = 0.7;
/** Longest wait in stop() for the handlers to end. */
export const STOP_TIMEOUT_MS = 5000;
/** Completed task ids an agent keeps (`completed`), the newest. */
export const COMPLETED_KEPT = 1000;
const REPORT_WAIT_FIRST_MS = 100;
const REPORT_WAIT_MAX_MS = 2000;

export type TaskHandler = (ctx: TaskContext) => unknown;

export interface AgentOptions {
  /** Its agent id, also its NATS identity. */
  id: string;
  /** A handler per task kind; `"*"` runs any kind. The kinds are declared at register. */
  handlers?: Record<string, TaskHandler>;
  /** The kinds to declare instead of the handlers' (empty: any kind). */
  kinds?: string[];
  capabilities?: string[];
  capacity?: number;
  labels?: Record<string, string>;
  services?: ServiceDeclaration[];
  /** nats://host:port, comma-separated for several (default nats://127.0.0.1:4222). */
  natsUrl?: string;
  /** The subject prefix (default `orch`). */
  prefix?: string;
  /** `oe1.<agent id>.<secret>` from `orchestrator enroll`: presented until let in. */
  enrollmentToken?: string;
  /** Where its own nkey seed is kept (made there, mode 0600, if missing). */
  keyFile?: string;
  /** Its nkey seed itself, instead of a key file. */
  nkeySeed?: string;
  /** Take the id over from a live incarnation (at the first registration only). */
  replace?: boolean;
  /** A promise that its handlers call `ctx.progress(...)` at least this often (seconds)
   * while they run: a run silent for three times as long (15 s at least) is taken for
   * stuck, moved elsewhere and revoked here (its AbortSignal fires), and two in a row take
   * the agent out of placement for a while (docs/protocol.md, Health). */
  progressEverySeconds?: number;
  requestTimeoutMs?: number;
  /** Called for every control message, after the agent has obeyed it. */
  onControl?: (control: ControlMessage) => void | Promise<void>;
  logger?: Logger;
}

export interface RegisterReply {
  ok: true;
  agent_id: string;
  incarnation: number;
  heartbeat_subject: string;
  heartbeat_interval_s: number;
  tasks_subject: string;
  control_subject: string;
  position?: number;
  credentials_ttl_s?: number | null;
}

export interface CatalogQuery {
  service?: string | null;
  tags?: string[];
  labels?: Record<string, string>;
  healthyOnly?: boolean;
}

/** What a task handler gets: the assignment, a way to report progress and stream
 * partial output, and a signal aborted when the task is cancelled, moves away or the
 * agent stops (its result is then dropped: nothing is reported). */
export class TaskContext {
  readonly taskId: string;
  readonly kind: string;
  readonly payload: unknown;
  readonly signal: AbortSignal;
  /** The current assignment: a task given again carries a newer token. */
  assignment: Assignment;
  private streamed = 0;

  constructor(private readonly agent: Agent, assignment: Assignment, signal: AbortSignal) {
    this.assignment = assignment;
    this.taskId = assignment.taskId;
    this.kind = assignment.kind;
    this.payload = assignment.payload;
    this.signal = signal;
  }

  get attempt(): number { return this.assignment.attempt; }
  get token(): string { return this.assignment.token; }

  /** The task and its current fencing token, as every report carries them. */
  tokenBody(): { task_id: string; token: string } {
    return { task_id: this.taskId, token: this.assignment.token };
  }

  /** Report how far the task is (0..1): its submitter sees every report at once. */
  async progress(value: number): Promise<void> {
    await this.agent.request(TASK_PROGRESS, { ...this.tokenBody(), progress: value });
  }

  /** Send a piece of partial output (at most 64 KiB) to the task's submitter, in order,
   * over core NATS: nothing is written to the log, nothing is sent again. */
  async stream(data: Uint8Array | string): Promise<void> {
    const chunk = typeof data === "string" ? new TextEncoder().encode(data) : data;
    const nc = this.agent.nc;
    if (nc === null) throw new CommandError("unavailable", "the agent is not connected");
    this.streamed += 1;
    const h = headers();
    h.set(STREAM_SEQ_HEADER, String(this.streamed));
    nc.publish(this.agent.subjects.agentStream(this.agent.id, this.taskId), chunk, { headers: h });
  }
}

interface Work {
  context: TaskContext;
  controller: AbortController;
  done: Promise<void>;
}

class Stopping extends Error {
  constructor() { super("the agent is stopping"); this.name = "Stopping"; }
}

export class Agent {
  readonly id: string;
  readonly subjects: Subjects;
  readonly natsUrl: string;
  nc: NatsConnection | null = null;
  incarnation = 0;
  /** The `position` of the register reply, sent with every heartbeat. */
  registeredAt: number | null = null;
  heartbeatIntervalS = 1.0;
  credentialsTtlS: number | null = null;
  heartbeatsSent = 0;
  heartbeatsPaused = false;
  /** Set it to report a load of your own (0..1); by default the share of capacity used. */
  load: number | null = null;
  readonly running: string[] = [];
  /** The tasks it completed last, newest at the end: at most COMPLETED_KEPT, so a
   * long-running agent does not hold one id per task it ever ran. */
  readonly completed: string[] = [];
  /** Renewals of its credentials (reconnects it asked for). */
  renewals = 0;
  /** Reconnects of any cause. */
  reconnects = 0;
  /** Whether the latest connection carried the enrollment token. */
  tokenSent = false;
  /** Set when another live process holds this agent id: it stopped heartbeating. */
  replacedByAnother: CommandError | null = null;
  /** Set when the orchestrator deregistered this agent: it stopped. */
  deregisteredByOrchestrator: ControlMessage | null = null;

  private readonly handlers: Record<string, TaskHandler>;
  private registration: JsonObject;
  private readonly capacity: number;
  private readonly seed: string | undefined;
  private readonly enrollmentToken: string | undefined;
  private readonly requestTimeoutMs: number;
  private readonly onControlCallback: AgentOptions["onControl"];
  private readonly log: Logger;
  private readonly work = new Map<string, Work>();
  private stopping = false;
  private stopController = new AbortController();
  /** What runs in the background (heartbeats, renewal, recovery), by name. */
  private readonly background = new Map<Promise<unknown>, string>();
  private seq = 0;
  private ready: (timeoutMs: number) => Promise<void> = () => Promise.resolve();
  private expiredBefore = 0; // on connections closed since
  private expirations: () => number = () => 0;
  private deregisteredItself = 0;
  private endedResolve: () => void = () => {};
  private ended: Promise<void> = Promise.resolve();

  constructor(options: AgentOptions) {
    this.id = checkIdentifier(options.id, "agent id");
    this.handlers = { ...(options.handlers ?? {}) };
    this.capacity = options.capacity ?? 1;
    const kinds = options.kinds
      ?? ("*" in this.handlers ? [] : Object.keys(this.handlers).sort());
    this.registration = {
      agent_id: this.id,
      capabilities: options.capabilities ?? [],
      capacity: this.capacity,
      labels: options.labels ?? {},
      services: (options.services ?? []).map(serviceDeclaration),
      kinds,
      replace: options.replace ?? false,
      instance_id: randomUUID().replaceAll("-", ""),
      progress_every_s: options.progressEverySeconds ?? null,
    };
    this.natsUrl = options.natsUrl ?? "nats://127.0.0.1:4222";
    this.subjects = new Subjects(options.prefix ?? "orch");
    this.seed = options.nkeySeed ?? (options.keyFile ? loadOrCreateSeed(options.keyFile) : undefined);
    this.enrollmentToken = options.enrollmentToken || undefined;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 5000;
    this.onControlCallback = options.onControl;
    this.log = options.logger ?? defaultLogger(`agent ${this.id}`);
  }

  // --- connecting ------------------------------------------------------------------

  /** Connect, register and start heartbeating; the registration reply. */
  async start(): Promise<RegisterReply> {
    this.stopping = false;
    this.stopController = new AbortController();
    this.deregisteredByOrchestrator = null;
    this.ended = new Promise((resolve) => { this.endedResolve = resolve; });
    this.nc = await this.connect();
    let reply: RegisterReply;
    try {
      reply = await this.register();
    } catch (err) { // refused (a live incarnation, a policy): nothing keeps running
      const nc = this.nc;
      this.stopping = true;
      this.nc = null;
      await nc.close().catch(() => {});
      this.endedResolve();
      throw err;
    }
    this.spawn(this.heartbeatLoop(), "heartbeat");
    if (this.credentialsTtlS) this.spawn(this.renewLoop(), "renew");
    return reply;
  }

  private async connect(): Promise<NatsConnection> {
    const connected = await open({
      servers: this.natsUrl, name: this.id, inboxPrefix: this.subjects.inboxPrefix(this.id),
      seed: this.seed, token: this.enrollmentToken, log: this.log,
    });
    const nc = connected.nc;
    this.ready = connected.ready;
    this.expiredBefore += this.expirations();
    this.expirations = connected.expirations;
    this.tokenSent = connected.tokenSent();
    nc.subscribe(this.subjects.agentControl(this.id), {
      callback: (err, msg) => {
        if (!err) this.onControl(msg).catch((e) => this.log.warn(`control: ${String(e)}`));
      },
    });
    nc.subscribe(this.subjects.agentTasks(this.id), {
      callback: (err, msg) => { if (!err) this.onAssignment(msg); },
    });
    await nc.flush(); // subscribed before an assignment can be sent
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === "reconnect") {
          this.reconnects += 1;
          this.tokenSent = connected.tokenSent();
          this.log.debug("reconnected");
          this.spawn(this.recoverAssignments(), "recovery"); // what was sent while away is fetched
        }
      }
    })().catch(() => {});
    void nc.closed().then(() => {
      if (!this.stopping && this.nc === nc) {
        this.log.warn("connection closed by the server; connecting again");
        this.spawn(this.reconnectAfterClose(), "reconnect");
      }
    });
    return nc;
  }

  private async reconnectAfterClose(): Promise<void> {
    let delay = 250;
    while (!this.stopping) {
      try {
        this.nc = await this.connect();
        await this.recoverAssignments();
        return;
      } catch (err) {
        this.log.info(`reconnect failed: ${String(err)}`);
        await sleep(delay, this.stopController.signal);
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  /** Reconnect before the credentials run out: the callout issues fresh ones (and
   * refuses a revoked agent). Work goes on: reports are retried. */
  private async renewLoop(): Promise<void> {
    while (!this.stopping && this.credentialsTtlS) {
      await sleep(this.credentialsTtlS * RENEW_AT * 1000, this.stopController.signal);
      if (this.stopping || this.nc === null) return;
      this.log.debug("renewing credentials");
      try {
        await this.nc.reconnect();
        this.renewals += 1;
      } catch (err) {
        this.log.info(`renewal failed: ${String(err)}`);
      }
    }
  }

  // --- commands --------------------------------------------------------------------

  /** Send one command about itself; the reply, or CommandError with its code. */
  async request(command: string, body: JsonObject): Promise<JsonObject> {
    if (this.nc === null) throw new CommandError("unavailable", "start() first");
    await this.ready(this.requestTimeoutMs);
    if (this.nc === null) throw new CommandError("unavailable", "stopped");
    const msg = await this.nc.request(this.subjects.agentCommand(this.id, command), encode(body),
      { timeout: this.requestTimeoutMs });
    return answer(msg);
  }

  async register(): Promise<RegisterReply> {
    const reply = await this.request(REGISTER, this.registration) as unknown as RegisterReply;
    // Taking over is for the start only: a later re-registration must not take the id
    // back from a process that replaced this one.
    this.registration = { ...this.registration, replace: false };
    this.incarnation = reply.incarnation;
    this.registeredAt = reply.position || null;
    this.heartbeatIntervalS = reply.heartbeat_interval_s;
    this.credentialsTtlS = reply.credentials_ttl_s ?? null;
    return reply;
  }

  async deregister(): Promise<JsonObject> {
    const reply = await this.request(DEREGISTER, { agent_id: this.id, incarnation: this.incarnation });
    this.deregisteredItself = this.incarnation;
    return reply;
  }

  /** Replace the services it offers (an empty list withdraws them all). */
  async declareServices(services: ServiceDeclaration[]): Promise<JsonObject> {
    return this.request(SERVICES, { agent_id: this.id, services: services.map(serviceDeclaration) });
  }

  /** The service catalog: the instances of `service` (or every service). */
  async catalogQuery(query: CatalogQuery = {}): Promise<JsonObject[]> {
    if (this.nc === null) throw new CommandError("unavailable", "start() first");
    await this.ready(this.requestTimeoutMs);
    const found = await catalog.query(this.nc, { ...query, prefix: this.subjects.prefix,
      timeoutMs: this.requestTimeoutMs });
    return found.instances;
  }

  /** The instances of `service` now, then again whenever they change (catalog.ts). */
  watchCatalog(service: string, options: { healthyOnly?: boolean; checkEveryS?: number } = {}):
      AsyncGenerator<JsonObject[]> {
    if (this.nc === null) throw new CommandError("unavailable", "start() first");
    return catalog.watch(this.nc, service, { ...options, prefix: this.subjects.prefix,
      timeoutMs: this.requestTimeoutMs });
  }

  /** How many times the server cut it off because its credentials expired before they
   * were renewed (0 while renewal keeps ahead of them). */
  get credentialsExpired(): number { return this.expiredBefore + this.expirations(); }

  get currentLoad(): number {
    if (this.load !== null) return this.load;
    return this.capacity ? Math.min(1, this.running.length / this.capacity) : 1;
  }

  /** Publish one heartbeat to JetStream and wait for its acknowledgement. */
  async heartbeat(): Promise<void> {
    if (this.nc === null) return;
    this.seq += 1;
    const beat: JsonObject = { incarnation: this.incarnation, seq: this.seq,
      load: this.currentLoad, running: [...this.running] };
    if (this.registeredAt !== null) beat.registered_at = this.registeredAt;
    await jetstream(this.nc).publish(this.subjects.heartbeat(this.id), encode(beat),
      { timeout: Math.max(this.heartbeatIntervalS * 1000, 500) });
    this.heartbeatsSent += 1;
  }

  private async heartbeatLoop(): Promise<void> {
    while (!this.stopping) {
      if (!this.heartbeatsPaused) {
        try {
          await this.heartbeat();
        } catch (err) { // keep trying through outages
          if (!this.stopping) this.log.debug(`heartbeat failed: ${String(err)}`);
        }
      }
      await sleep(this.heartbeatIntervalS * 1000, this.stopController.signal);
    }
  }

  // --- control -----------------------------------------------------------------------

  private async onControl(msg: Msg): Promise<void> {
    let control: ControlMessage;
    try {
      control = parseControl(msg.data);
    } catch {
      this.log.warn("unreadable control message");
      return;
    }
    if (control.type === "reregister") {
      if (control.incarnation !== undefined && control.incarnation !== this.incarnation) {
        return; // meant for another process with this id (the control subject is shared)
      }
      await this.reregister(control.reason);
    } else if (control.type === "deregistered") {
      if ((control.incarnation !== undefined && control.incarnation !== this.incarnation)
          || control.incarnation === this.deregisteredItself || this.stopping) {
        return; // another process's, or its own leaving
      }
      this.deregisteredByOrchestrator = control;
      this.log.error(`deregistered by the orchestrator (${control.reason}): stopping; start it again to rejoin`);
      void this.stop({ deregister: false });
    } else if ((control.type === "cancel" || control.type === "revoke") && control.taskId) {
      const work = this.work.get(control.taskId);
      if (control.token && work && work.context.token !== control.token) {
        return; // an older assignment's: the task was given to it again since
      }
      if (work) {
        this.log.info(`stopping task=${control.taskId} reason=${control.reason}`);
        work.controller.abort(new Error(`${control.type}: ${control.reason}`));
      }
    }
    if (this.onControlCallback) await this.onControlCallback(control);
  }

  private async reregister(reason: string): Promise<void> {
    this.log.info(`re-registering reason=${reason}`);
    try {
      await this.register();
    } catch (err) {
      if (err instanceof CommandError && err.code === "conflict") {
        // Another live process took this id over: heartbeating on as an old
        // incarnation would only be refused again.
        this.replacedByAnother = err;
        this.heartbeatsPaused = true;
        this.log.error(`stopped heartbeating: another process holds its id (${err.message})`);
      } else {
        this.log.warn(`re-registration failed: ${String(err)}`);
      }
    }
  }

  // --- tasks -------------------------------------------------------------------------

  private onAssignment(msg: Msg): void {
    let assignment: Assignment;
    try {
      assignment = parseAssignment(msg.data);
    } catch {
      this.log.warn("unreadable assignment");
      return;
    }
    this.take(assignment);
  }

  private take(assignment: Assignment): void {
    const current = this.work.get(assignment.taskId);
    if (current) {
      if (current.context.token !== assignment.token) {
        // Given to us again (say after an accept timeout): the old token is stale now,
        // so the work goes on under the new one, accepted first.
        current.context.assignment = assignment;
        this.spawn(this.report(TASK_ACCEPT, current.context.tokenBody(), current.controller.signal)
          .catch(() => {}), "accept again");
      }
      return; // else already at it (an assignment seen again after a reconnect)
    }
    const controller = new AbortController();
    const context = new TaskContext(this, assignment, controller.signal);
    const work: Work = { context, controller, done: Promise.resolve() };
    this.work.set(assignment.taskId, work);
    work.done = this.run(work).finally(() => {
      if (this.work.get(assignment.taskId) === work) this.work.delete(assignment.taskId);
    });
  }

  private async run(work: Work): Promise<void> {
    const { context, controller } = work;
    const signal = controller.signal;
    const handler = this.handlers[context.kind] ?? this.handlers["*"];
    try {
      await this.report(TASK_ACCEPT, context.tokenBody(), signal);
    } catch (err) {
      this.log.info(`assignment dropped task=${context.taskId}: ${String(err)}`);
      return;
    }
    this.running.push(context.taskId);
    try {
      if (handler === undefined) throw new TaskFailed(`no handler for kind ${context.kind}`, false);
      const result = await untilAborted(Promise.resolve().then(() => handler(context)), signal);
      await this.report(TASK_COMPLETE, { ...context.tokenBody(), result: result ?? null }, signal);
      this.completed.push(context.taskId);
      if (this.completed.length > COMPLETED_KEPT) this.completed.shift();
    } catch (err) {
      if (signal.aborted || err instanceof Stopping) {
        return; // cancelled, moved or stopping: report nothing
      }
      if (err instanceof TaskFailed) {
        await this.reportFailure(context, err.message, err.retryable, signal);
      } else if (err instanceof CommandError) { // stale_token and the like: drop it
        this.log.info(`result refused task=${context.taskId}: ${err.message}`);
      } else {
        const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
        await this.reportFailure(context, text, true, signal);
      }
    } finally {
      const at = this.running.indexOf(context.taskId);
      if (at >= 0) this.running.splice(at, 1);
    }
  }

  private async reportFailure(context: TaskContext, error: string, retryable: boolean,
                              signal: AbortSignal): Promise<void> {
    try {
      await this.report(TASK_FAIL, { ...context.tokenBody(), error: error.slice(0, 4096), retryable },
        signal);
    } catch (err) {
      this.log.info(`failure report dropped task=${context.taskId}: ${String(err)}`);
    }
  }

  /** Send a report until the orchestrator answers: reports are idempotent, and a result
   * must outlive an orchestrator restart or a NATS outage. A refusal other than
   * `unavailable` (`stale_token`: the task is no longer ours) is thrown. */
  private async report(command: string, body: JsonObject, signal: AbortSignal): Promise<JsonObject> {
    let delay = REPORT_WAIT_FIRST_MS;
    for (;;) {
      if (this.stopping || signal.aborted) throw new Stopping();
      try {
        return await this.request(command, body);
      } catch (err) {
        if (err instanceof CommandError && err.code !== "unavailable") throw err;
        if (!(err instanceof CommandError) && !noAnswer(err)) throw err;
        this.log.info(`report pending command=${command}: ${String(err)}`);
      }
      await sleep(delay, this.stopController.signal);
      delay = Math.min(delay * 2, REPORT_WAIT_MAX_MS);
    }
  }

  /** Ask for the assignments it holds (after a reconnect: one sent meanwhile is lost). */
  async recoverAssignments(): Promise<string[]> {
    let reply: JsonObject;
    try {
      reply = await this.request(ASSIGNMENTS, { agent_id: this.id });
    } catch (err) {
      this.log.debug(`assignments unavailable: ${String(err)}`);
      return [];
    }
    const recovered = (reply.assignments as JsonObject[]).map((a) => parseAssignment(a));
    for (const assignment of recovered) this.take(assignment);
    return recovered.map((a) => a.taskId);
  }

  // --- stopping ----------------------------------------------------------------------

  /** After start(): run until one of `signals` (then stop, and deregister unless told
   * not to) or until the orchestrator deregisters this agent. */
  async runUntilStopped(options: { signals?: NodeJS.Signals[]; deregister?: boolean } = {}):
      Promise<void> {
    const signals = options.signals ?? ["SIGINT", "SIGTERM"];
    let onSignal: () => void = () => {};
    const signalled = new Promise<void>((resolve) => { onSignal = resolve; });
    for (const sig of signals) process.once(sig, onSignal);
    try {
      await Promise.race([signalled, this.ended]);
    } finally {
      for (const sig of signals) process.removeListener(sig, onSignal);
    }
    await this.stop({ deregister: options.deregister ?? true });
  }

  /** Stop heartbeating and the handlers (their signals are aborted); deregister unless
   * told not to, so its open tasks move at once; drain the connection. */
  async stop(options: { deregister?: boolean } = {}): Promise<void> {
    const deregister = options.deregister ?? true;
    if (this.stopping) {
      await this.ended;
      return;
    }
    this.stopping = true;
    this.stopController.abort();
    const works = [...this.work.values()];
    for (const work of works) work.controller.abort(new Error("the agent is stopping"));
    const waited = new AbortController(); // so that no timer outlives the stop
    await Promise.race([
      Promise.allSettled([...works.map((w) => w.done), ...this.background.keys()]),
      sleep(STOP_TIMEOUT_MS, waited.signal),
    ]);
    waited.abort();
    if (this.background.size) {
      this.log.debug(`stop: still running ${[...this.background.values()].join(", ")}`);
    }
    const nc = this.nc;
    if (nc !== null) {
      if (deregister && this.deregisteredByOrchestrator === null && this.incarnation
          && !nc.isClosed()) {
        try {
          await this.deregister();
        } catch (err) {
          this.log.info(`deregister failed: ${String(err)}`);
        }
      }
      this.nc = null;
      try {
        if (!nc.isClosed()) await nc.drain();
      } catch {
        await nc.close().catch(() => {});
      }
    }
    this.endedResolve();
  }

  private spawn(promise: Promise<unknown>, name: string): void {
    const tracked = promise.catch((err) => this.log.debug(`${name}: ${String(err)}`));
    this.background.set(tracked, name);
    void tracked.finally(() => this.background.delete(tracked));
  }
}

function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  work.catch(() => {}); // its outcome may come after the abort: not unhandled
  if (signal.aborted) return Promise.reject(new Stopping());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Stopping());
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => { signal.removeEventListener("abort", onAbort); resolve(value); },
      (err) => { signal.removeEventListener("abort", onAbort); reject(err); },
    );
  });
}
