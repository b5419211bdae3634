export { Agent, TaskContext, RENEW_AT, type AgentOptions, type CatalogQuery, type RegisterReply,
  type TaskHandler } from "./agent.js";
export { Client, type ClientConnectOptions, type TaskOptions, type TaskSpec } from "./client.js";
export { CommandError, TaskCancelled, TaskDeadLettered, TaskError, TaskFailed,
  TimeoutError } from "./errors.js";
export { TaskHandle, TaskOutcome, FINISHED } from "./results.js";
export { loadOrCreateSeed, publicKey, readSeed } from "./credentials.js";
export { Subjects, type Assignment, type ControlMessage, type ServiceDeclaration } from "./protocol.js";
export { taskIdOf, type Schedule, type ScheduleOptions } from "./schedules.js";
export type { Logger } from "./connection.js";
export { query as catalogQuery, watch as watchCatalog, type CatalogAnswer,
  type CatalogQueryOptions, type WatchOptions } from "./catalog.js";
