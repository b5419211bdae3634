// An agent's own key: made once where the agent runs, kept there (mode 0600), and never
// sent anywhere; the orchestrator only ever sees its public half.

import { mkdirSync, openSync, readFileSync, writeSync, closeSync, existsSync } from "node:fs";
import { dirname } from "node:path";
import { createUser, fromSeed } from "@nats-io/nkeys";

/** The nkey seed in `path`, made there first (mode 0600) if it does not exist yet. */
export function loadOrCreateSeed(path: string): string {
  if (!existsSync(path)) {
    const seed = new TextDecoder().decode(createUser().getSeed());
    mkdirSync(dirname(path), { recursive: true });
    let fd: number;
    try {
      fd = openSync(path, "wx", 0o600); // O_CREAT | O_EXCL: never over another's key
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      return readSeed(path); // made meanwhile by another process
    }
    try {
      writeSync(fd, `${seed}\n`);
    } finally {
      closeSync(fd);
    }
  }
  return readSeed(path);
}

/** A seed kept in a file (an identity's, made by `orchestrator identity create`). */
export function readSeed(path: string): string {
  return readFileSync(path, "utf8").trim();
}

/** The public key of a seed (`U...`): what `orchestrator identity create` registers. */
export function publicKey(seed: string): string {
  return fromSeed(new TextEncoder().encode(seed)).getPublicKey();
}
