// The embedded engine's committer: a worker thread that owns the write connection to the
// SQLite database and commits one batch at a time, in the order sent. While it waits on
// fsync, the main thread keeps serving and gathers the next batch, so commits overlap
// with request handling instead of stalling it (etcd fsyncs off its serving path too).
import { parentPort, workerData } from "node:worker_threads";
import { type Batch, SqlitePersistence } from "./persist.js";

const port = parentPort;
if (!port) throw new Error("commit-worker runs as a worker thread");
const persistence = new SqlitePersistence(workerData.path as string);

/** Structured clone turns Buffers into Uint8Arrays: view them as Buffers again, copy-free. */
function buf(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

port.on("message", (message: { id: number; batch: Batch } | { close: true }) => {
  if ("close" in message) {
    persistence.close();
    port.close();
    return;
  }
  const { id, batch } = message;
  try {
    for (const c of batch.changes) {
      (c as { key: Buffer }).key = buf(c.key);
      (c as { value: Buffer }).value = buf(c.value);
    }
    persistence.commit(batch);
    port.postMessage({ id });
  } catch (err) {
    port.postMessage({ id, error: err instanceof Error ? err.message : String(err) });
  }
});
