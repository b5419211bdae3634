// The protocol as the SDK speaks it: subject names and message shapes (docs/protocol.md
// in the orchestrator's repository; the same names as the Python SDK's sdk/protocol.py).

/** Agent ids, task ids, identities and service names: one token of a NATS subject. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export const REGISTER = "register";
export const DEREGISTER = "deregister";
export const ASSIGNMENTS = "assignments";
export const SERVICES = "services";
export const TASK_ACCEPT = "task.accept";
export const TASK_PROGRESS = "task.progress";
export const TASK_COMPLETE = "task.complete";
export const TASK_FAIL = "task.fail";
export const CATALOG_QUERY = "catalog.query";
export const INBOX_ROOT = "_INBOX";

/** The number of a chunk of partial output, from 1: the client puts chunks in order. */
export const STREAM_SEQ_HEADER = "Orch-Seq";
/** On the feed of a task: a progress report rather than a chunk. */
export const PROGRESS_HEADER = "Orch-Progress";

export type ControlType = "reregister" | "cancel" | "revoke" | "deregistered";
const CONTROL_TYPES: readonly string[] = ["reregister", "cancel", "revoke", "deregistered"];

/** The subjects derived from the prefix (`orch` by default). */
export class Subjects {
  constructor(readonly prefix: string = "orch") {}
  command(name: string): string { return `${this.prefix}.${name}`; }
  agentCommand(agentId: string, name: string): string {
    return `${this.prefix}.agent.${agentId}.${name}`;
  }
  clientCommand(name: string, identity: string): string {
    return `${this.prefix}.${name}.${identity}`;
  }
  heartbeat(agentId: string): string { return `${this.prefix}.hb.${agentId}`; }
  agentTasks(agentId: string): string { return `${this.prefix}.agent.${agentId}.tasks`; }
  agentControl(agentId: string): string { return `${this.prefix}.agent.${agentId}.control`; }
  agentStream(agentId: string, taskId: string): string {
    return `${this.prefix}.agent.${agentId}.stream.${taskId}`;
  }
  catalogChanges(service: string): string { return `${this.prefix}.catalog.changes.${service}`; }
  results(identity: string): string { return `${this.prefix}.result.${identity}.>`; }
  feeds(identity: string): string { return `${this.prefix}.stream.${identity}.>`; }
  /** The only reply inbox an identity may subscribe to (`_INBOX.<identity>`). */
  inboxPrefix(identity: string): string { return `${INBOX_ROOT}.${identity}`; }
}

/** `value` if it is an identifier (it becomes a subject token); else an Error. */
export function checkIdentifier(value: string, what: string): string {
  if (typeof value !== "string" || !ID_PATTERN.test(value)) {
    throw new Error(`${what} must match ${ID_PATTERN.source}, not ${JSON.stringify(value)}`);
  }
  return value;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
export const encode = (body: unknown): Uint8Array => encoder.encode(JSON.stringify(body));
export const decode = (data: Uint8Array): unknown => JSON.parse(decoder.decode(data));

export type JsonObject = { [key: string]: unknown };

function object(data: Uint8Array | JsonObject, what: string): JsonObject {
  const body = data instanceof Uint8Array ? decode(data) : data;
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new Error(`${what} is not a JSON object`);
  }
  return body as JsonObject;
}

function field<T>(body: JsonObject, name: string, type: "string" | "number" | "integer" | "array",
                  what: string, optional = false): T {
  if (!(name in body) || (optional && body[name] === null)) {
    if (optional) return undefined as T;
    throw new Error(`${what} lacks ${name}`);
  }
  const value = body[name];
  const ok = type === "array" ? Array.isArray(value)
    : type === "integer" ? Number.isInteger(value)
      : typeof value === type;
  if (!ok) throw new Error(`${what}.${name} has the wrong type`);
  return value as T;
}

/** Published on `<prefix>.agent.<agent_id>.tasks` (schema assignment). */
export interface Assignment {
  taskId: string;
  kind: string;
  requires: string[];
  attempt: number;
  token: string;
  timeoutS: number;
  payload: unknown;
}

export function parseAssignment(data: Uint8Array | JsonObject): Assignment {
  const body = object(data, "assignment");
  const requires = field<unknown[]>(body, "requires", "array", "assignment");
  if (!requires.every((r) => typeof r === "string")) {
    throw new Error("assignment.requires has the wrong type");
  }
  return {
    taskId: field(body, "task_id", "string", "assignment"),
    kind: field(body, "kind", "string", "assignment"),
    requires: requires as string[],
    attempt: field(body, "attempt", "integer", "assignment"),
    token: field(body, "token", "string", "assignment"),
    timeoutS: field(body, "timeout_s", "number", "assignment"),
    payload: body.payload ?? null,
  };
}

/** Sent by the orchestrator on `<prefix>.agent.<agent_id>.control` (schema control). */
export interface ControlMessage {
  type: ControlType;
  reason: string;
  incarnation?: number;
  taskId?: string;
  /** A revoke of an assignment that moved names its token: a newer one is kept working. */
  token?: string;
}

export function parseControl(data: Uint8Array | JsonObject): ControlMessage {
  const body = object(data, "control message");
  const type = field<string>(body, "type", "string", "control message");
  if (!CONTROL_TYPES.includes(type)) throw new Error(`unknown control message type ${type}`);
  return {
    type: type as ControlType,
    reason: field(body, "reason", "string", "control message"),
    incarnation: field(body, "incarnation", "integer", "control message", true),
    taskId: field(body, "task_id", "string", "control message", true),
    token: field(body, "token", "string", "control message", true),
  };
}

/** A service as `register` carries it. */
export interface ServiceDeclaration {
  name: string;
  address: string;
  port: number;
  tags?: string[];
  meta?: Record<string, string>;
}

export function serviceDeclaration(service: ServiceDeclaration): JsonObject {
  if (!service || service.name === undefined || service.address === undefined
      || service.port === undefined) {
    throw new Error(`a service needs a name, an address and a port: ${JSON.stringify(service)}`);
  }
  return { ...service, tags: [...(service.tags ?? [])], meta: { ...(service.meta ?? {}) } };
}
