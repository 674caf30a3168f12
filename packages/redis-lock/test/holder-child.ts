// A Redis lock holder process for the fault test: takes the lock (1 s validity, extended
// every third of it), says "held <token>", says "lost <code>" when its signal fires, and on a
// "release" line says "released <true|false>".
import { createInterface } from "node:readline";
import { isCairnError } from "@cairn/core";
import { Redis } from "ioredis";
import { redisLock } from "../src/index.js";

const [port, key] = process.argv.slice(2);
if (!port || !key) throw new Error("usage: holder-child PORT KEY");
const redis = new Redis({ host: "127.0.0.1", port: Number(port), maxRetriesPerRequest: null });
const say = (line: string) => process.stdout.write(`${line}\n`);
const hold = await redisLock(redis, key, { ttlMs: 1_000 }).acquire();
hold.signal.addEventListener("abort", () => {
  const reason = hold.signal.reason;
  say(`lost ${isCairnError(reason) ? reason.code : String(reason)}`);
});
say(`held ${hold.token}`);
for await (const line of createInterface({ input: process.stdin })) {
  if (line === "release") say(`released ${await hold.release()}`);
}
redis.disconnect();
