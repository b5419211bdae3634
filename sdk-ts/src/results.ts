// What a client gets back for a task: its outcome (and the errors of one that did not
// complete), its handle, and the feed of a running task (progress, partial output).
// The twin of the Python SDK's sdk/results.py.

import { TaskCancelled, TaskDeadLettered, TimeoutError } from "./errors.js";
import type { JsonObject } from "./protocol.js";

export const FINISHED: readonly string[] = ["completed", "dead_lettered", "cancelled"];

/** A task's state as its submitter sees it (schema task.outcome). */
export class TaskOutcome {
  constructor(
    readonly taskId: string,
    readonly status: string,
    readonly attempt: number,
    readonly result: unknown,
    readonly error: string | null,
    readonly position: number,
  ) {}

  get finished(): boolean { return FINISHED.includes(this.status); }

  static parse(body: JsonObject): TaskOutcome {
    if (typeof body.task_id !== "string" || typeof body.status !== "string") {
      throw new Error("a task outcome needs task_id and status");
    }
    return new TaskOutcome(body.task_id, body.status, Number(body.attempt ?? 0),
      body.result ?? null, (body.error as string | null | undefined) ?? null,
      Number(body.position ?? 0));
  }

  /** The result of a completed task; TaskDeadLettered or TaskCancelled otherwise. */
  value(): unknown {
    if (this.status === "completed") return this.result;
    if (this.status === "cancelled") throw new TaskCancelled(this);
    throw new TaskDeadLettered(this);
  }
}

/** A promise settled from outside, that can say whether it has been. */
export class Deferred<T> {
  readonly promise: Promise<T>;
  settled = false;
  value: T | undefined;
  private resolveFn!: (value: T) => void;
  private rejectFn!: (err: unknown) => void;
  constructor() {
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
    this.promise.catch(() => {});
  }
  resolve(value: T): void {
    if (this.settled) return;
    this.settled = true;
    this.value = value;
    this.resolveFn(value);
  }
  reject(err: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.rejectFn(err);
  }
}

/** What a running task's agent sends its submitter: progress, and partial output
 * numbered from 1 (kept until taken in order). */
export class Feed {
  progress: number | null = null;
  readonly chunks = new Map<number, Uint8Array>();
  next = 1;
  private waiters: (() => void)[] = [];
  changed(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
  wait(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

export interface HandleOwner {
  readonly identity: string;
}

/** A submitted task: its id, its progress and partial output while it runs, and its
 * result when it finishes. */
export class TaskHandle {
  constructor(
    readonly client: HandleOwner,
    readonly taskId: string,
    /** @internal */ readonly future: Deferred<TaskOutcome>,
    /** @internal */ readonly feed: Feed,
  ) {}

  /** The latest progress its agent reported (null before any). */
  get progress(): number | null { return this.feed.progress; }

  done(): boolean { return this.future.settled; }

  /** The partial output its agent streams (`ctx.stream`), in the order sent, until the
   * task finishes. Not kept anywhere: a chunk sent while this client was away, or
   * arriving after the task's outcome, is not seen. */
  async *stream(): AsyncGenerator<Uint8Array> {
    const feed = this.feed;
    for (;;) {
      while (feed.chunks.has(feed.next)) {
        const chunk = feed.chunks.get(feed.next)!;
        feed.chunks.delete(feed.next);
        feed.next += 1;
        yield chunk;
      }
      if (this.future.settled) {
        for (const seq of [...feed.chunks.keys()].sort((a, b) => a - b)) { // after a gap
          const chunk = feed.chunks.get(seq)!;
          feed.chunks.delete(seq);
          yield chunk;
        }
        return;
      }
      await Promise.race([feed.wait(), this.future.promise.then(() => {}, () => {})]);
    }
  }

  /** How the task ended, once it has (TimeoutError after `timeout` seconds). */
  async outcome(options: { timeout?: number } = {}): Promise<TaskOutcome> {
    if (options.timeout === undefined) return this.future.promise;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(
        `task ${this.taskId} not finished in ${options.timeout} s`)), options.timeout! * 1000);
    });
    try {
      return await Promise.race([this.future.promise, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The task's result; TaskDeadLettered or TaskCancelled if it did not complete,
   * TimeoutError if it has not finished within `timeout` seconds. */
  async result(options: { timeout?: number } = {}): Promise<unknown> {
    return (await this.outcome(options)).value();
  }

  toString(): string { return `TaskHandle(${this.taskId})`; }
}
