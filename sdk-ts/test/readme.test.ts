// README.md's example runs as written: its two files, against a real orchestrator with
// auth on; the agent enrolls, the submitter gets ten results, SIGTERM ends the agent.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { Orchestrator, PREFIX, SDK_DIR, eventually } from "./harness.js";

let orch: Orchestrator;
// Inside the package, so that `import ... from "orchestrator-sdk"` finds it (dist/).
const DIR = join(SDK_DIR, "dist-test", "readme");

function run(file: string, env: Record<string, string>) {
  const child = spawn(process.execPath, [file], { cwd: DIR, env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"] });
  const out = { text: "", child, exited: new Promise<number | null>((r) => child.once("exit", r)) };
  child.stdout.on("data", (d) => { out.text += String(d); });
  child.stderr.on("data", (d) => { out.text += String(d); });
  return out;
}

before(async () => {
  orch = await Orchestrator.start("on");
  rmSync(DIR, { recursive: true, force: true });
  mkdirSync(DIR, { recursive: true });
});

after(async () => { await orch?.stop(); });

test("README's agent and submitter run as written", async () => {
  const readme = readFileSync(join(SDK_DIR, "README.md"), "utf8");
  const blocks = [...readme.matchAll(/^```js\n(.*?)^```/gms)].map((m) => m[1]!);
  assert.equal(blocks.length, 2);
  for (const block of blocks) {
    const name = /^\/\/ (\S+\.mjs):/.exec(block)![1]!;
    writeFileSync(join(DIR, name), block);
  }
  const token = await orch.enroll("resizer-1");
  const env = { ORCH_NATS_URL: orch.url, ORCH_SUBJECT_PREFIX: PREFIX };
  const agent = run("resizer.mjs", { ...env, ORCH_ENROLLMENT_TOKEN: token,
    ORCH_KEY_FILE: join(DIR, "resizer-1.nk") });
  try {
    await eventually(() => /resizer-1 registered incarnation=1/.test(agent.text),
      "the agent registered");
    const submitter = run("submitter.mjs", { ...env, ORCH_IDENTITY: "operator",
      ORCH_CREDENTIALS: join(orch.dataDir, "data", "auth", "operator.nk") });
    assert.equal(await submitter.exited, 0, submitter.text);
    const lines = submitter.text.trim().split("\n");
    assert.equal(lines.length, 10, submitter.text);
    assert.deepEqual(lines.map((l) => JSON.parse(l.split(" ")[1]!).resized.image).sort(),
      Array.from({ length: 10 }, (_, n) => `${n}.png`).sort());
    agent.child.kill("SIGTERM");
    assert.equal(await agent.exited, 0, agent.text);
    assert.match(agent.text, /resizer-1 stopped/);
    await eventually(async () => (await orch.agent("resizer-1"))?.status === "left", "left");
  } finally {
    if (agent.child.exitCode === null) agent.child.kill("SIGKILL");
  }
});
