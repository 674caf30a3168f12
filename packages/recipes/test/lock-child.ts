// A lock-holding process for the lock fault tests, on etcd.
//   count ENDPOINTS NAMESPACE ROUNDS: adds 1 to a shared counter ROUNDS times under the lock,
//     writing history/<n> = fencing token with each increment, then says "done".
//   hold ENDPOINTS NAMESPACE: takes the lock on a 2 s lease and says "held <token>"; then for
//     each "write" line on stdin makes a guarded write and says "write ok" or "write refused";
//     says "lost <code>" when its lock's signal fires.
//   lead ENDPOINTS NAMESPACE: campaigns (2 s lease) with its pid as value; while leading,
//     writes test/term = its fencing token every 10 ms through the leadership's guard;
//     campaigns again on a new session whenever leadership is lost.
import { createInterface } from "node:readline";
import { isCairnError } from "@cairn/core";
import { connectEtcd } from "@cairn/etcd";
import { election, mutex, openSession } from "../src/index.js";

const [mode, endpoints, namespace, rounds] = process.argv.slice(2);
if (!mode || !endpoints || !namespace)
  throw new Error("usage: lock-child count|hold|lead ENDPOINTS NAMESPACE [ROUNDS]");
const store = connectEtcd({ endpoints: endpoints.split(",") });
const say = (line: string) => process.stdout.write(`${line}\n`);

if (mode === "count") {
  const counterKey = `/cairn/${namespace}/test/counter`;
  const session = await openSession(store, { namespace, ttl: 5 });
  const m = mutex(session, "counter");
  for (let i = 0; i < Number(rounds); i++) {
    await m.withLock(async (lock) => {
      const next = Number((await store.get(counterKey))?.value.toString() ?? "0") + 1;
      const res = await lock.txn({
        success: [
          { type: "put", key: counterKey, value: String(next) },
          {
            type: "put",
            key: `/cairn/${namespace}/test/history/${String(next).padStart(4, "0")}`,
            value: String(lock.fencingToken),
          },
        ],
      });
      if (!res.succeeded) throw new Error(`guarded increment refused at ${next}`);
    });
  }
  await session.close();
  await store.close();
  say("done");
} else if (mode === "hold") {
  const dataKey = `/cairn/${namespace}/test/data`;
  const session = await openSession(store, { namespace, ttl: 2 });
  const lock = await mutex(session, "stall").acquire();
  lock.signal.addEventListener("abort", () => {
    const reason = lock.signal.reason;
    say(`lost ${isCairnError(reason) ? reason.code : String(reason)}`);
  });
  say(`held ${lock.fencingToken}`);
  for await (const line of createInterface({ input: process.stdin })) {
    if (line !== "write") continue;
    const res = await lock.txn({ success: [{ type: "put", key: dataKey, value: `child ${lock.fencingToken}` }] });
    say(`write ${res.succeeded ? "ok" : "refused"}`);
  }
  await store.close();
} else if (mode === "lead") {
  const termKey = `/cairn/${namespace}/test/term`;
  for (;;) {
    const session = await openSession(store, { namespace, ttl: 2 });
    const leadership = await election(session, "chaos").campaign(String(process.pid));
    say(`leading ${leadership.fencingToken}`);
    while (!leadership.signal.aborted) {
      await leadership.txn({ success: [{ type: "put", key: termKey, value: String(leadership.fencingToken) }] });
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    say("lost");
    await session.close().catch(() => {});
  }
} else {
  throw new Error(`unknown mode ${mode}`);
}
