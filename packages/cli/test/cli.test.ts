// The cairn command against a real etcd: what it prints, and its exit codes.
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { GATEWAY_NODE_FLAGS } from "@cairn/gateway";
import { type EtcdCluster, startEtcdCluster } from "@cairn/testing";

const bin = fileURLToPath(new URL("../src/bin.js", import.meta.url));
const execFileAsync = promisify(execFile);
let cluster: EtcdCluster;
let endpoints = "";

before(async () => {
  cluster = await startEtcdCluster({ members: 1 });
  endpoints = cluster.endpoints.join(",");
});
after(async () => {
  await cluster?.close();
});

interface Run {
  code: number | null;
  out: string;
  err: string;
}

function cairn(args: string[], input?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, "--endpoints", endpoints, ...args]);
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      err += d;
    });
    child.on("close", (code) => resolve({ code, out, err }));
    child.stdin.end(input ?? "");
  });
}

function start(args: string[]): {
  child: ChildProcessWithoutNullStreams;
  lines: string[];
  next: (re: RegExp) => Promise<string>;
} {
  const child = spawn(process.execPath, [bin, "--endpoints", endpoints, ...args]);
  const lines: string[] = [];
  let buffer = "";
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => {
    buffer += chunk;
    const parts = buffer.split("\n");
    buffer = parts.pop() ?? "";
    for (const line of parts) {
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.re.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  const next = (re: RegExp) =>
    new Promise<string>((resolve, reject) => {
      const found = lines.find((l) => re.test(l));
      if (found) return resolve(found);
      const timer = setTimeout(() => reject(new Error(`no line matching ${re} in ${JSON.stringify(lines)}`)), 10_000);
      waiters.push({
        re,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
    });
  return { child, lines, next };
}

const exited = (child: ChildProcessWithoutNullStreams) =>
  new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));

describe("cairn kv", () => {
  it("put, get, get --prefix as a table and as JSON, del", async () => {
    assert.equal((await cairn(["kv", "put", "/cli/a", "one"])).code, 0);
    assert.equal((await cairn(["kv", "put", "/cli/b", "-"], "two")).code, 0);
    const one = await cairn(["kv", "get", "/cli/a"]);
    assert.deepEqual([one.code, one.out], [0, "one\n"]);
    const table = await cairn(["kv", "get", "/cli/", "--prefix"]);
    assert.match(table.out, /^KEY\s+VALUE\n\/cli\/a\s+one\n\/cli\/b\s+two\n$/);
    const json = JSON.parse((await cairn(["--json", "kv", "get", "/cli/", "--prefix"])).out);
    assert.deepEqual(
      json.kvs.map((k: { key: string; value: string; version: number }) => [k.key, k.value, k.version]),
      [
        ["/cli/a", "one", 1],
        ["/cli/b", "two", 1],
      ],
    );
    assert.ok(json.revision > 1);
    const del = await cairn(["kv", "del", "/cli/", "--prefix"]);
    assert.deepEqual([del.code, del.out], [0, "2\n"]);
  });

  it("a missing key exits 1 and says which; a wrong command line exits 2 and says what is wrong", async () => {
    const missing = await cairn(["kv", "get", "/cli/none"]);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /key not found: \/cli\/none/);
    const unknown = await cairn(["kv", "fetch", "x"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.err, /expected get, put, del or watch, got "fetch"/);
    const badRev = await cairn(["kv", "get", "x", "--rev", "soon"]);
    assert.equal(badRev.code, 2);
    assert.match(badRev.err, /--rev: expected a whole number/);
    const badFlag = await cairn(["kv", "get", "x", "--bogus"]);
    assert.equal(badFlag.code, 2);
    assert.match(badFlag.err, /bogus/);
    const future = await cairn(["kv", "get", "x", "--rev", "999999"]);
    assert.equal(future.code, 1);
    assert.match(future.err, /EFUTURE_REV/);
  });

  it("watch prints each event until interrupted", async () => {
    const watch = start(["kv", "watch", "/cli/w/", "--prefix"]);
    const code = exited(watch.child);
    // The watch is set up once the process answers; write until the first event shows.
    const first = (async () => {
      for (let i = 0; i < 50 && watch.lines.length === 0; i++) {
        await cairn(["kv", "put", "/cli/w/k", `v${i}`]);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    assert.match(await watch.next(/^PUT \/cli\/w\/k v\d+$/), /PUT/);
    await first;
    await cairn(["kv", "del", "/cli/w/k"]);
    await watch.next(/^DELETE \/cli\/w\/k$/);
    watch.child.kill("SIGINT");
    assert.equal(await code, 0);
  });
});

describe("cairn svc", () => {
  it("register stays in the foreground; list and show see it with health; Ctrl-C deregisters", async () => {
    const reg = start([
      "--namespace",
      "clitest",
      "svc",
      "register",
      "users",
      "--address",
      "10.0.0.1",
      "--port",
      "8080",
      "--id",
      "u1",
      "--zone",
      "a",
      "--meta",
      "build=7",
    ]);
    const code = exited(reg.child);
    await reg.next(/^registered users\/u1/);
    const list = await cairn(["--namespace", "clitest", "svc", "list"]);
    assert.equal(list.code, 0);
    assert.match(list.out, /^SERVICE\s+INSTANCES\s+HEALTHY.*\nusers\s+1\s+1\s+1\s+0\s+0\s+0\n$/);
    const show = JSON.parse((await cairn(["--namespace", "clitest", "--json", "svc", "show", "users"])).out);
    assert.equal(show[0].address, "10.0.0.1");
    assert.equal(show[0].metadata.build, "7");
    assert.equal(show[0].health, "passing");
    reg.child.kill("SIGINT");
    assert.equal(await code, 0);
    const empty = await cairn(["--namespace", "clitest", "svc", "show", "users"]);
    assert.equal(empty.code, 1);
    assert.match(empty.err, /no instances of users/);
  });

  it("deregister removes another process's instance; register refuses bad input with the field named", async () => {
    const reg = start([
      "--namespace",
      "clitest2",
      "svc",
      "register",
      "pay",
      "--address",
      "h",
      "--port",
      "1",
      "--id",
      "p1",
    ]);
    const code = exited(reg.child);
    await reg.next(/^registered/);
    const gone = await cairn(["--namespace", "clitest2", "svc", "deregister", "pay", "p1"]);
    assert.deepEqual([gone.code, gone.out], [0, "deregistered pay/p1\n"]);
    assert.equal((await cairn(["--namespace", "clitest2", "svc", "show", "pay"])).code, 1);
    reg.child.kill("SIGINT");
    await code;
    const bad = await cairn(["svc", "register", "pay", "--address", "h", "--port", "99999"]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /EINVALID: invalid port/);
    const noPort = await cairn(["svc", "register", "pay", "--address", "h"]);
    assert.equal(noPort.code, 2);
    assert.match(noPort.err, /--port is required/);
  });
});

describe("cairn cfg", () => {
  it("put, get, history, diff and rollback", async () => {
    const ns = ["--namespace", "clicfg"];
    assert.equal(
      (await cairn([...ns, "cfg", "put", "db", '{"host":"a","port":5432}', "--comment", "first"])).out,
      "version 1\n",
    );
    assert.equal((await cairn([...ns, "cfg", "put", "db", "-"], '{"host":"b","port":5432}')).out, "version 2\n");
    const got = await cairn([...ns, "cfg", "get", "db"]);
    assert.deepEqual(JSON.parse(got.out), { host: "b", port: 5432 });
    const history = await cairn([...ns, "cfg", "history", "db"]);
    assert.match(history.out, /^VERSION\s+OP\s+AUTHOR\s+TIME\s+COMMENT\n1\s+put\s+.*first\n2\s+put/);
    const diff = await cairn([...ns, "cfg", "diff", "db", "1", "2"]);
    assert.match(diff.out, /host\s+changed\s+"a"\s+"b"/);
    assert.equal((await cairn([...ns, "cfg", "rollback", "db", "1"])).out, "version 3 (content of version 1)\n");
    assert.deepEqual(JSON.parse((await cairn([...ns, "cfg", "get", "db"])).out), { host: "a", port: 5432 });
    const missing = await cairn([...ns, "cfg", "get", "nothing"]);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /config not found/);
  });
});

describe("cairn lock and elect", () => {
  it("lock runs each command alone, in turn, with growing fencing tokens, and passes on its exit code", async () => {
    const script = 'echo "start $CAIRN_FENCING_TOKEN"; sleep 0.4; echo "end $CAIRN_FENCING_TOKEN"';
    const runs = await Promise.all([1, 2, 3].map(() => cairn(["lock", "jobs", "--", "sh", "-c", script])));
    const spans = runs.map((r) => {
      assert.equal(r.code, 0, r.err);
      const [start, end] = r.out.trim().split("\n");
      const token = Number(start?.split(" ")[1]);
      assert.equal(end, `end ${token}`);
      return token;
    });
    assert.equal(new Set(spans).size, 3, "each holder had its own token");
    const failing = await cairn(["lock", "jobs", "--", "sh", "-c", "exit 3"]);
    assert.equal(failing.code, 3);
    const usage = await cairn(["lock", "jobs"]);
    assert.equal(usage.code, 2);
  });

  it("lock holders never overlap", async () => {
    // Each holder appends "in" then "out" to a shared file; overlapping holders would interleave.
    const file = `/tmp/cairn-lock-${process.pid}-${Date.now()}`;
    const script = `echo in >> ${file}; sleep 0.2; echo out >> ${file}`;
    await Promise.all([1, 2, 3, 4].map(() => cairn(["lock", "overlap", "--", "sh", "-c", script])));
    const { readFileSync, rmSync } = await import("node:fs");
    const lines = readFileSync(file, "utf8").trim().split("\n");
    rmSync(file, { force: true });
    assert.deepEqual(lines, ["in", "out", "in", "out", "in", "out", "in", "out"]);
  });

  it("elect leads until interrupted; the next candidate then leads; --listen sees both", async () => {
    const listen = start(["elect", "chief", "--listen"]);
    const first = start(["elect", "chief", "alpha"]);
    await first.next(/\/elections\/chief\/\d+ alpha$/);
    await listen.next(/ alpha$/);
    const second = start(["elect", "chief", "beta"]);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(second.lines.length, 0, "the second candidate waits");
    const firstExit = exited(first.child);
    first.child.kill("SIGINT");
    assert.equal(await firstExit, 0);
    await second.next(/ beta$/);
    await listen.next(/ beta$/);
    const secondExit = exited(second.child);
    const listenExit = exited(listen.child);
    second.child.kill("SIGINT");
    listen.child.kill("SIGINT");
    assert.equal(await secondExit, 0);
    assert.equal(await listenExit, 0);
  });
});

describe("cairn server (through the cairn command)", () => {
  it("runs in the foreground, serves etcd's protocol and REST, and stops on SIGTERM with exit 0", async () => {
    const { mkdtempSync, rmSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const dataDir = mkdtempSync(join(tmpdir(), "cairn-cli-server-"));
    const child = spawn(process.execPath, [
      bin,
      "server",
      "--data-dir",
      dataDir,
      "--grpc-port",
      "0",
      "--http-port",
      "0",
    ]);
    try {
      const listening = await new Promise<{ grpcUrl: string; httpUrl: string }>((resolve, reject) => {
        let buffer = "";
        child.stdout.on("data", (chunk) => {
          buffer += chunk;
          for (const line of buffer.split("\n")) {
            if (line.includes('"cairn server listening"')) resolve(JSON.parse(line));
          }
        });
        child.on("exit", (code) => reject(new Error(`exited ${code}`)));
      });
      const put = await new Promise<Run>((resolve) => {
        const c = spawn(process.execPath, [bin, "--endpoints", listening.grpcUrl, "kv", "put", "/srv/k", "v"]);
        let out = "";
        c.stdout.on("data", (d) => {
          out += d;
        });
        c.on("close", (code) => resolve({ code, out, err: "" }));
      });
      assert.deepEqual([put.code, put.out], [0, "OK\n"]);
      const kv = (await (await fetch(`${listening.httpUrl}/v1/kv?prefix=/srv/`)).json()) as {
        kvs: { value: string }[];
      };
      assert.equal(kv.kvs[0]?.value, "v");
      const code = exited(child);
      child.kill("SIGTERM");
      assert.equal(await code, 0);
    } finally {
      child.kill("SIGKILL");
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe("cairn route", () => {
  it("put from a file and from stdin, list, get, history, rollback, delete; an invalid route names its paths", async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const dir = mkdtempSync(join(tmpdir(), "cairn-route-"));
    const file = join(dir, "route.json");
    const route = (path: string) => ({
      id: "users",
      match: { path },
      upstream: { type: "static", targets: [{ address: "127.0.0.1", port: 9 }] },
    });
    try {
      writeFileSync(file, JSON.stringify(route("/users")));
      const ns = ["--namespace", "cliroute"];
      assert.equal((await cairn([...ns, "route", "put", file])).out, "route users at version 1\n");
      assert.equal(
        (await cairn([...ns, "route", "put", "-"], JSON.stringify(route("/people")))).out,
        "route users at version 2\n",
      );
      const list = await cairn([...ns, "route", "list"]);
      assert.match(
        list.out,
        /^ID\s+VERSION\s+PRIORITY\s+MATCH\s+UPSTREAM\s+ENABLED\nusers\s+2\s+0\s+\/people\s+127\.0\.0\.1:9\s+true\n$/,
      );
      assert.equal(JSON.parse((await cairn([...ns, "route", "get", "users"])).out).match.path, "/people");
      assert.match(
        (await cairn([...ns, "route", "rollback", "users", "1"])).out,
        /version 3 \(the route of version 1\)/,
      );
      assert.equal(JSON.parse((await cairn([...ns, "route", "get", "users"])).out).match.path, "/users");
      assert.match((await cairn([...ns, "route", "history", "users"])).out, /1\s+put[\s\S]*3\s+rollback \(of 1\)/);
      const bad = await cairn(
        [...ns, "route", "put", "-"],
        JSON.stringify({ id: "x", match: { path: "" }, upstream: {} }),
      );
      assert.equal(bad.code, 1);
      assert.match(bad.err, /match\.path/);
      assert.match(bad.err, /upstream/);
      assert.equal((await cairn([...ns, "route", "delete", "users"])).out, "deleted route users\n");
      assert.equal((await cairn([...ns, "route", "get", "users"])).code, 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the installed cairn executable", () => {
  const installed = fileURLToPath(new URL("../../bin/cairn.js", import.meta.url));

  it("runs by its first line with the gateway's node flags", async () => {
    const firstLine = readFileSync(installed, "utf8").split("\n")[0];
    assert.equal(firstLine, `#!/usr/bin/env -S node ${GATEWAY_NODE_FLAGS.join(" ")}`);
    // Executed as a program (the way npm's bin link runs it), not through `node file`.
    const { stdout } = await execFileAsync(installed, ["--help"]);
    assert.match(stdout, /^usage: cairn /);
  });
});
