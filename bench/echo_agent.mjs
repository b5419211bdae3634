// node bench/echo_agent.mjs NATS_URL PREFIX AGENT_ID CAPACITY KIND: one agent of the
// compiled TypeScript SDK (sdk-ts/dist, `make sdk-ts`) that runs tasks of KIND by
// returning their payload; prints `ready` once registered, runs until SIGTERM (then
// deregisters). The TypeScript half of the sdk_ts scenario; bench/echo_agent.py is its
// Python twin.
import { Agent } from "../sdk-ts/dist/index.js";

const [natsUrl, prefix, id, capacity, kind] = process.argv.slice(2);
const agent = new Agent({
  id,
  natsUrl,
  prefix,
  capacity: Number(capacity),
  handlers: { [kind]: async (ctx) => ctx.payload },
});
await agent.start();
process.stdout.write("ready\n");
await agent.runUntilStopped();
