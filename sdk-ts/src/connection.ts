// How the SDK connects: its own inbox (the only replies it may read with auth on), its
// own nkey, reconnecting forever, and a growing wait while the server refuses it.

import {
  connect, errors, nkeyAuthenticator, type Authenticator, type Msg, type NatsConnection,
} from "@nats-io/transport-node";

import { CommandError } from "./errors.js";
import { decode, type JsonObject } from "./protocol.js";

export interface ConnectOptions {
  servers: string;
  name: string;
  inboxPrefix: string;
  seed?: string | undefined;
  /** Sent with connections until one has been let in (an enrollment token). */
  token?: string | undefined;
  log: Logger;
}

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** Quiet unless ORCH_SDK_LOG is set (to `debug` for everything). */
export function defaultLogger(scope: string): Logger {
  const level = process.env.ORCH_SDK_LOG;
  const out = (lvl: string) => (message: string) => {
    process.stderr.write(`${new Date().toISOString()} ${lvl} ${scope} ${message}\n`);
  };
  const none = () => {};
  return {
    debug: level === "debug" ? out("DEBUG") : none,
    info: level === "debug" || level === "info" ? out("INFO") : none,
    warn: level ? out("WARNING") : none,
    error: out("ERROR"),
  };
}

// Refused connections (the key not enrolled, or revoked) are tried again after a wait
// that doubles from the first to the most; other reconnects after 250 ms.
export const RECONNECT_WAIT_MS = 250;
export const REFUSED_WAIT_FIRST_MS = 500;
export const REFUSED_WAIT_MAX_MS = 30_000;

export interface Connected {
  nc: NatsConnection;
  /** Whether the latest CONNECT carried the token. */
  tokenSent(): boolean;
  /** Resolves once connected (at once if it is), or after `timeoutMs` regardless.
   * nats.js drops what is published while it is disconnected: a request sent then
   * would only be lost and wait out its timeout. */
  ready(timeoutMs: number): Promise<void>;
  /** How many times the server cut the connection because its credentials expired
   * (none while they are renewed in time). */
  expirations(): number;
}

export async function open(options: ConnectOptions): Promise<Connected> {
  let letIn = false;
  let tokenSent = false;
  let refusedWait = 0;
  const authenticators: Authenticator[] = [];
  if (options.seed) authenticators.push(nkeyAuthenticator(new TextEncoder().encode(options.seed)));
  if (options.token) {
    const token = options.token;
    authenticators.push(() => {
      tokenSent = !letIn;
      return letIn ? undefined : { auth_token: token };
    });
  }
  const nc = await connect({
    servers: options.servers.split(","),
    name: options.name,
    inboxPrefix: options.inboxPrefix,
    authenticator: authenticators.length ? authenticators : undefined,
    maxReconnectAttempts: -1,
    reconnectTimeWait: RECONNECT_WAIT_MS,
    // A refusal (authorization violation) twice in a row would otherwise close the
    // connection for good: an agent whose credentials expired while the orchestrator
    // was away must keep trying.
    ignoreAuthErrorAbort: true,
    reconnectDelayHandler: () => refusedWait || RECONNECT_WAIT_MS,
    timeout: 5000,
  });
  letIn = true;
  let connected = true;
  let expired = 0;
  let waiters: (() => void)[] = [];
  const wake = () => {
    const woken = waiters;
    waiters = [];
    for (const w of woken) w();
  };
  void nc.closed().then(wake);
  (async () => {
    for await (const status of nc.status()) {
      if (status.type === "error"
          && (status as { error?: unknown }).error instanceof errors.UserAuthenticationExpiredError) {
        expired += 1;
        options.log.info(`credentials expired before they were renewed: ${options.name}`);
      }
      if (status.type === "disconnect") connected = false;
      if (status.type === "reconnect") {
        connected = true;
        wake();
      }
      if (status.type === "error" && String((status as { error?: unknown }).error)
        .toLowerCase().includes("authorization")) {
        refusedWait = Math.min(REFUSED_WAIT_MAX_MS, refusedWait * 2 || REFUSED_WAIT_FIRST_MS);
        options.log.warn(`not let in as ${options.name}: its key is not enrolled, or was revoked`);
      } else if (status.type === "reconnect") {
        refusedWait = 0;
      }
    }
  })().catch(() => {});
  const ready = (timeoutMs: number): Promise<void> => {
    if (connected || nc.isClosed()) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      waiters.push(() => { clearTimeout(timer); resolve(); });
    });
  };
  return { nc, tokenSent: () => tokenSent, ready, expirations: () => expired };
}

/** A request failed without an answer (timeout, nobody listening, reconnecting): safe to
 * send again, as every command the SDK retries is idempotent. */
export function noAnswer(err: unknown): boolean {
  if (refusedByServer(err)) return false;
  const e = err as { cause?: unknown } | undefined;
  return err instanceof errors.TimeoutError || err instanceof errors.NoRespondersError
    || err instanceof errors.RequestError || err instanceof errors.ConnectionError
    || err instanceof errors.ClosedConnectionError
    || (e?.cause !== undefined && e.cause !== err && noAnswer(e.cause));
}

export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });

/** The NATS server itself refused it: a subject this identity may not use. */
export function refusedByServer(err: unknown): boolean {
  for (let e = err as { cause?: unknown } | undefined, depth = 0; e && depth < 5;
    e = e.cause as { cause?: unknown } | undefined, depth++) {
    if (e instanceof errors.PermissionViolationError) return true;
  }
  return false;
}

/** The JSON reply of a command: its fields, or CommandError with its code. */
export function answer(msg: Msg): JsonObject {
  const reply = decode(msg.data) as JsonObject;
  if (!reply.ok) {
    const error = (reply.error ?? {}) as JsonObject;
    throw new CommandError(String(error.code ?? "unknown"), String(error.message ?? ""),
      error.details as unknown[] | undefined, error.retry_after_s as number | undefined);
  }
  return reply;
}
