// Helpers of the tests: an agent process of its own, and a few waits.

import { spawn, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "agent-process.js");

export class AgentProcess {
  readonly lines: Record<string, any>[] = [];
  output = "";
  readonly exited: Promise<number | null>;
  constructor(readonly child: ChildProcess) {
    let buffered = "";
    child.stdout!.on("data", (d) => {
      buffered += String(d);
      this.output += String(d);
      let at: number;
      while ((at = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, at);
        buffered = buffered.slice(at + 1);
        try { this.lines.push(JSON.parse(line)); } catch { /* not ours */ }
      }
    });
    child.stderr!.on("data", (d) => { this.output += String(d); });
    this.exited = new Promise((r) => child.once("exit", (code) => r(code)));
  }

  static start(env: Record<string, string>): AgentProcess {
    return new AgentProcess(spawn(process.execPath, [FIXTURE], {
      env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"],
    }));
  }

  said(event: string): Record<string, any> | undefined {
    return this.lines.find((l) => l.event === event);
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    if (this.child.exitCode === null) this.child.kill(signal);
  }
}
