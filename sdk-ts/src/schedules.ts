// Schedules from the client: a task submitted by the orchestrator at every due slot of a
// cron expression (five fields, UTC) or an interval (docs/scheduling.md). The twin of
// the Python SDK's sdk/schedules.py.

import type { JsonObject } from "./protocol.js";
import type { TaskOptions } from "./client.js";

export const SCHEDULE_CREATE = "schedule.create";
export const SCHEDULE_PAUSE = "schedule.pause";
export const SCHEDULE_RESUME = "schedule.resume";
export const SCHEDULE_DELETE = "schedule.delete";
export const SCHEDULE_LIST = "schedule.list";

export type Request = (command: string, body: JsonObject) => Promise<JsonObject>;

/** A schedule as the orchestrator answered it; times in epoch seconds, UTC. */
export interface Schedule {
  name: string;
  owner: string;
  cron: string | null;
  everyS: number | null;
  task: JsonObject;
  overlap: string;
  catchUp: string;
  graceS: number;
  status: string; // active, paused or deleted
  nextDue: number | null;
  lastDue: number | null;
  lastTaskId: string | null;
  fired: number;
}

export function parseSchedule(body: JsonObject): Schedule {
  return {
    name: String(body.name), owner: String(body.owner),
    cron: (body.cron as string | null | undefined) ?? null,
    everyS: (body.every_s as number | null | undefined) ?? null,
    task: { ...((body.task as JsonObject | null) ?? {}) },
    overlap: (body.overlap as string | undefined) ?? "skip",
    catchUp: (body.catch_up as string | undefined) ?? "once",
    graceS: Number(body.grace_s ?? 0), status: (body.status as string | undefined) ?? "",
    nextDue: (body.next_due as number | null | undefined) ?? null,
    lastDue: (body.last_due as number | null | undefined) ?? null,
    lastTaskId: (body.last_task_id as string | null | undefined) ?? null,
    fired: Number(body.fired ?? 0),
  };
}

/** The id of the task a schedule's slot due at `due` submits. */
export const taskIdOf = (name: string, due: number): string => `${name}-${Math.floor(due)}`;

export interface ScheduleOptions extends Omit<TaskOptions, "taskId" | "delayS" | "notBefore"> {
  kind: string;
  cron?: string;
  everyS?: number;
  payload?: unknown;
  overlap?: "skip" | "allow";
  catchUp?: "once" | "skip";
  graceS?: number;
  replace?: boolean;
}

export async function create(request: Request, name: string, options: ScheduleOptions):
    Promise<Schedule> {
  const task: JsonObject = {
    kind: options.kind, payload: options.payload ?? null, requires: options.requires ?? [],
    priority: options.priority ?? 0, max_attempts: options.maxAttempts ?? 3,
    timeout_s: options.timeoutS ?? 300,
  };
  if (options.concurrencyKey) task.concurrency_key = options.concurrencyKey;
  if (options.fairnessKey) task.fairness_key = options.fairnessKey;
  if (options.selector && Object.keys(options.selector).length) task.selector = { ...options.selector };
  if (options.prefer && Object.keys(options.prefer).length) task.prefer = { ...options.prefer };
  const body: JsonObject = { name, task, overlap: options.overlap ?? "skip",
    catch_up: options.catchUp ?? "once", grace_s: options.graceS ?? 60,
    replace: options.replace ?? false };
  if (options.cron !== undefined) body.cron = options.cron;
  if (options.everyS !== undefined) body.every_s = options.everyS;
  return parseSchedule((await request(SCHEDULE_CREATE, body)).schedule as JsonObject);
}

/** Pause, resume or delete a schedule: the schedule after it. */
export async function act(request: Request, command: string, name: string): Promise<Schedule> {
  return parseSchedule((await request(command, { name })).schedule as JsonObject);
}

/** Every live schedule of the identity (an operator's: everyone's), by name. */
export async function listAll(request: Request): Promise<Schedule[]> {
  const found: Schedule[] = [];
  let after: string | null = null;
  for (;;) {
    const body: JsonObject = { limit: 1000 };
    if (after !== null) body.after = after;
    const reply = await request(SCHEDULE_LIST, body);
    found.push(...(reply.schedules as JsonObject[]).map(parseSchedule));
    after = (reply.next_after as string | null | undefined) ?? null;
    if (after === null) return found;
  }
}
