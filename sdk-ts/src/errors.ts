// What the SDK throws when the orchestrator refuses a command, what a task handler
// throws to fail its task, and what a client gets for a task that did not complete.

import type { TaskOutcome } from "./results.js";

/** The orchestrator refused a command; `code` is the protocol's error code. */
export class CommandError extends Error {
  readonly code: string;
  readonly details: unknown[];
  /** `overloaded`: when to try again (seconds). */
  readonly retryAfterS: number | null;
  constructor(code: string, message: string, details?: unknown[] | null,
              retryAfterS?: number | null) {
    super(`${code}: ${message}`);
    this.name = "CommandError";
    this.code = code;
    this.details = details ?? [];
    this.retryAfterS = retryAfterS ?? null;
  }
}

/** Thrown by a task handler to fail its task; `retryable: false` dead-letters it. */
export class TaskFailed extends Error {
  readonly retryable: boolean;
  constructor(error: string, retryable = true) {
    super(error);
    this.name = "TaskFailed";
    this.retryable = retryable;
  }
}

/** A task did not complete; `outcome` is how it ended. */
export class TaskError extends Error {
  readonly outcome: TaskOutcome;
  constructor(outcome: TaskOutcome) {
    super(`task ${outcome.taskId} ${outcome.status}: ${outcome.error}`);
    this.name = "TaskError";
    this.outcome = outcome;
  }
}

/** Failed for good: its attempts ran out, or a failure said it must not be retried. */
export class TaskDeadLettered extends TaskError {
  constructor(outcome: TaskOutcome) { super(outcome); this.name = "TaskDeadLettered"; }
}

/** Cancelled before it finished (`outcome.error` is the reason). */
export class TaskCancelled extends TaskError {
  constructor(outcome: TaskOutcome) { super(outcome); this.name = "TaskCancelled"; }
}

/** Awaiting a task (or tasks) took longer than the timeout given. */
export class TimeoutError extends Error {
  constructor(message: string) { super(message); this.name = "TimeoutError"; }
}
