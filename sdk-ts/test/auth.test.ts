// The agent and the client against an orchestrator with ORCH_AUTH=on (credentials that
// last 3 s): enrollment with a one-time token and the agent's own key (a file, 0600),
// credential renewal by reconnecting with the key alone, a restart with the key file,
// and identities that cannot act as anyone else.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createUser } from "@nats-io/nkeys";
import { errors } from "@nats-io/transport-node";

import { Agent, Client, CommandError, publicKey, readSeed } from "../src/index.js";
import { JWT_TTL_S, Orchestrator, PREFIX, delay, eventually } from "./harness.js";

let orch: Orchestrator;
let keys: string;
let submitterSeed: string;
const agents: Agent[] = [];
const clients: Client[] = [];

function isPermissionViolation(err: unknown): boolean {
  for (let e = err as { cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (e instanceof errors.PermissionViolationError) return true;
    if (e === e.cause) break;
  }
  return false;
}

async function identity(name: string, roles: string[]): Promise<string> {
  const seed = new TextDecoder().decode(createUser().getSeed());
  const reply = await orch.admin("admin.identity.create", { name, roles, public_key: publicKey(seed) });
  assert.ok(reply.ok, JSON.stringify(reply));
  return seed;
}

before(async () => {
  orch = await Orchestrator.start("on");
  keys = mkdtempSync(join(tmpdir(), "orch-sdk-ts-keys-"));
  submitterSeed = await identity("ts-submitter", ["submitter"]);
});

after(async () => {
  for (const c of clients) await c.close().catch(() => {});
  for (const a of agents) await a.stop({ deregister: false }).catch(() => {});
  await orch?.stop();
  rmSync(keys, { recursive: true, force: true });
});

describe("auth on", () => {
  test("enrollment, then renewal: the key in a 0600 file, the token sent once, work goes on", async () => {
    const keyFile = join(keys, "ts-secure.nk");
    const token = await orch.enroll("ts-secure");
    const a = new Agent({ id: "ts-secure", natsUrl: orch.url, prefix: PREFIX, keyFile,
      enrollmentToken: token, handlers: { "secure.echo": (ctx) => ctx.payload } });
    agents.push(a);
    const reply = await a.start();
    assert.equal(reply.incarnation, 1);
    assert.equal(reply.credentials_ttl_s, JWT_TTL_S);
    assert.equal(a.tokenSent, true);
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    const seed = readSeed(keyFile);
    assert.match(seed, /^SU[A-Z2-7]{56}$/);
    const events = await orch.read("/v1/events?subject=identity.ts-secure.>&limit=100");
    const enrolled = events.events.filter((e: any) => e.type === "AgentEnrolled");
    assert.deepEqual(enrolled.map((e: any) => [e.data.public_key, e.identity]),
      [[publicKey(seed), "ts-secure"]]);

    const client = await Client.connect({ natsUrl: orch.url, identity: "ts-submitter",
      prefix: PREFIX, credentials: submitterSeed, credentialsTtlS: JWT_TTL_S });
    clients.push(client);
    // One that does not renew in time: the server cuts it off, and it comes back.
    const late = await Client.connect({ natsUrl: orch.url, identity: "ts-submitter",
      prefix: PREFIX, credentials: submitterSeed, credentialsTtlS: 600 });
    clients.push(late);
    const first = await client.submit("secure.echo", { n: 1 });
    assert.deepEqual(await first.result({ timeout: 15 }), { n: 1 });

    // Past two lifetimes of its credentials: renewed (by reconnecting with the key
    // alone), heartbeating, and still taking work; the client too.
    await eventually(() => a.renewals >= 2, "the agent renewed twice", JWT_TTL_S * 3000);
    assert.equal(a.tokenSent, false);
    assert.ok(client.renewals >= 1, "the client renewed too");
    assert.equal(a.credentialsExpired, 0, "the server never had to cut the agent off");
    assert.equal(client.credentialsExpired, 0, "nor the client");
    await eventually(() => late.credentialsExpired >= 1, "the late client cut off");
    const viaLate = await late.submit("secure.echo", { n: 2.5 });
    assert.deepEqual(await viaLate.result({ timeout: 15 }), { n: 2.5 });
    const second = await client.submit("secure.echo", { n: 2 });
    assert.deepEqual(await second.result({ timeout: 15 }), { n: 2 });
    assert.equal((await orch.agent("ts-secure")).status, "healthy");
    assert.equal((await orch.agent("ts-secure")).incarnation, 1, "never declared dead");
    const history = (await orch.taskHistory(second.taskId)).map((e: any) => [e.type, e.identity]);
    assert.deepEqual(history, [["Submitted", "ts-submitter"], ["Assigned", "orchestrator"],
      ["Accepted", "ts-secure"], ["Completed", "ts-secure"]]);

    // A restart of the agent: its key file alone lets it in (the token is used up).
    await a.stop();
    const again = new Agent({ id: "ts-secure", natsUrl: orch.url, prefix: PREFIX, keyFile,
      handlers: { "secure.echo": (ctx) => ctx.payload } });
    agents.push(again);
    assert.equal((await again.start()).incarnation, 2);
    assert.equal(again.tokenSent, false);
    const third = await client.submit("secure.echo", { n: 3 });
    assert.deepEqual(await third.result({ timeout: 15 }), { n: 3 });
    await again.stop();
  });

  test("an agent not enrolled is not let in", async () => {
    const stranger = new Agent({ id: "ts-stranger", natsUrl: orch.url, prefix: PREFIX,
      keyFile: join(keys, "ts-stranger.nk"), handlers: { echo: () => null } });
    await assert.rejects(stranger.start(), (err: unknown) => /uthoriz/i.test(String(err)));
    const used = new Agent({ id: "ts-stranger", natsUrl: orch.url, prefix: PREFIX,
      keyFile: join(keys, "ts-stranger.nk"), enrollmentToken: "oe1.ts-stranger.forged",
      handlers: { echo: () => null } });
    await assert.rejects(used.start(), (err: unknown) => /uthoriz/i.test(String(err)));
  });

  test("forged identity: an agent cannot act as another; a client cannot submit as another", async () => {
    const token = await orch.enroll("ts-honest");
    const a = new Agent({ id: "ts-honest", natsUrl: orch.url, prefix: PREFIX,
      keyFile: join(keys, "ts-honest.nk"), enrollmentToken: token, handlers: { echo: () => null } });
    agents.push(a);
    await a.start();
    const nc = a.nc!;
    await assert.rejects(
      nc.request(`${PREFIX}.agent.ts-victim.register`, new TextEncoder().encode("{}"), { timeout: 3000 }),
      isPermissionViolation);
    const sub = nc.subscribe(`${PREFIX}.agent.ts-victim.tasks`);
    const closed = await Promise.race([sub.closed, delay(3000).then(() => "open")]);
    assert.ok(isPermissionViolation(closed), `subscribe: ${String(closed)}`);
    assert.equal(await orch.agent("ts-victim"), null, "nothing written");

    // The submitter's key, claiming another name: the server refuses its subjects, and
    // the SDK says so at once instead of retrying.
    const forged = await Client.connect({ natsUrl: orch.url, identity: "ts-victim",
      prefix: PREFIX, credentials: submitterSeed });
    clients.push(forged);
    const started = Date.now();
    await assert.rejects(forged.submit("echo", "as someone else"),
      (err: unknown) => isPermissionViolation(err) || err instanceof CommandError);
    assert.ok(Date.now() - started < 5000, "refused at once, not retried");
    await a.stop();
  });

  test("revoked: the orchestrator deregisters it and it stops", async () => {
    const token = await orch.enroll("ts-revoked");
    const a = new Agent({ id: "ts-revoked", natsUrl: orch.url, prefix: PREFIX,
      keyFile: join(keys, "ts-revoked.nk"), enrollmentToken: token, handlers: { echo: () => null } });
    agents.push(a);
    await a.start();
    const running = a.runUntilStopped({ signals: [] });
    const reply = await orch.admin("admin.revoke", { name: "ts-revoked" });
    assert.ok(reply.ok && reply.deregistered, JSON.stringify(reply));
    await running;
    assert.equal(a.deregisteredByOrchestrator?.reason, "revoked");
  });
});
