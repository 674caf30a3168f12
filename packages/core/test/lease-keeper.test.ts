import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LeaseKeeper, LeaseLostError, LeaseNotFoundError } from "../src/index.js";

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves when the signal aborts; a ref'd timer keeps the loop alive (the keeper's are unref'd). */
function aborted(signal: AbortSignal, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not aborted within ${ms}ms`)), ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

describe("LeaseKeeper", () => {
  it("a lease whose keepalives get no answer is declared lost within its TTL", async () => {
    const started = performance.now();
    const keeper = new LeaseKeeper({
      id: "1",
      ttl: 0.3,
      keepAlive: true,
      refresh: () => new Promise<number>(() => {}),
      revoke: async () => {},
    });
    await aborted(keeper.signal, 2000);
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 280 && elapsed < 600, `lost after ${elapsed}ms`);
    assert.ok(keeper.signal.reason instanceof LeaseLostError);
    assert.equal(keeper.signal.reason.reason, "keepalive-timeout");
  });

  it("answered keepalives keep the lease alive past several TTLs", async () => {
    let refreshes = 0;
    const keeper = new LeaseKeeper({
      id: "2",
      ttl: 0.2,
      keepAlive: true,
      refresh: async () => {
        refreshes++;
        return 0.2;
      },
      revoke: async () => {},
    });
    await wait(700);
    assert.equal(keeper.signal.aborted, false);
    assert.ok(refreshes >= 5, `only ${refreshes} refreshes`);
    keeper.release();
  });

  it("a keepalive answering 'not found' marks the lease lost", async () => {
    const keeper = new LeaseKeeper({
      id: "3",
      ttl: 10,
      keepAlive: false,
      refresh: async () => {
        throw new LeaseNotFoundError("3");
      },
      revoke: async () => {},
    });
    await assert.rejects(keeper.keepAliveOnce(), { code: "ELEASE_NOT_FOUND" });
    assert.equal(keeper.signal.aborted, true);
    assert.equal((keeper.signal.reason as LeaseLostError).reason, "not-found");
  });

  it("release stops refreshing without revoking", async () => {
    let refreshes = 0;
    let revoked = false;
    const keeper = new LeaseKeeper({
      id: "4",
      ttl: 0.15,
      keepAlive: true,
      refresh: async () => {
        refreshes++;
        return 0.15;
      },
      revoke: async () => {
        revoked = true;
      },
    });
    keeper.release();
    await wait(300);
    assert.equal(refreshes, 0);
    assert.equal(revoked, false);
    assert.equal(keeper.signal.aborted, false, "a released lease is not reported lost by the keeper");
  });
});
