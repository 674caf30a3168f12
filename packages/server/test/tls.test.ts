// TLS as etcd's flags configure it: gRPC and HTTP over TLS with --cert-file/--key-file,
// client certificates required with --client-cert-auth.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { get } from "node:https";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { connectEtcd } from "@cairn/etcd";
import { CLI, removeDir, runEtcdctl, startServerProcess, tempDir } from "./support.js";

let pki: string;
const dirs: string[] = [];

/** A throwaway CA with a server certificate for 127.0.0.1 and a client certificate. */
function makePki(dir: string): void {
  const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  ssl("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=cairn test CA");
  for (const [name, ext] of [
    ["server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"],
    ["client", "extendedKeyUsage=clientAuth"],
  ] as const) {
    ssl("req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=cairn-${name}`);
    writeFileSync(join(dir, `${name}.ext`), `${ext}\n`);
    ssl(
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.crt`,
      "-days",
      "2",
      "-extfile",
      `${name}.ext`,
    );
  }
}

before(() => {
  pki = tempDir("cairn-pki-");
  dirs.push(pki);
  makePki(pki);
});

after(() => {
  for (const d of dirs) removeDir(d);
});

const file = (name: string) => join(pki, name);

function httpsStatus(url: string, ca: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    get(url, { ca }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on("error", reject);
  });
}

describe("TLS", () => {
  it("with a certificate, etcd clients and etcdctl connect over TLS and plaintext clients are refused", async () => {
    const server = await startServerProcess({
      args: ["--cert-file", file("server.crt"), "--key-file", file("server.key")],
    });
    dirs.push(server.dataDir);
    try {
      assert.match(server.endpoint, /^https:\/\/127\.0\.0\.1:\d+$/);
      const store = connectEtcd({
        endpoints: [server.endpoint],
        credentials: { rootCertificate: readFileSync(file("ca.crt")) },
      });
      try {
        await store.put("/tls/k", "v");
        assert.equal((await store.get("/tls/k"))?.value.toString(), "v");
      } finally {
        await store.close();
      }
      const secure = await runEtcdctl(server.address, [
        "--cacert",
        file("ca.crt"),
        "get",
        "/tls/k",
        "--print-value-only",
      ]);
      assert.deepEqual([secure.code, secure.stdout], [0, "v\n"], secure.stderr);
      const plain = await runEtcdctl(server.address, ["--dial-timeout=1s", "--command-timeout=2s", "get", "/tls/k"]);
      assert.notEqual(plain.code, 0, "a plaintext client gets nothing");
      assert.equal(await httpsStatus(`${server.httpUrl}/healthz`, readFileSync(file("ca.crt"))), 200);
    } finally {
      await server.stop();
    }
  });

  it("with --client-cert-auth only clients with a certificate from the trusted CA are served, and its name is their user", async () => {
    const server = await startServerProcess({
      args: [
        "--cert-file",
        file("server.crt"),
        "--key-file",
        file("server.key"),
        "--trusted-ca-file",
        file("ca.crt"),
        "--client-cert-auth",
      ],
    });
    dirs.push(server.dataDir);
    try {
      const without = await runEtcdctl(server.address, [
        "--cacert",
        file("ca.crt"),
        "--dial-timeout=1s",
        "--command-timeout=2s",
        "put",
        "/tls/m",
        "x",
      ]);
      assert.notEqual(without.code, 0, "no client certificate, no service");
      const withCert = await runEtcdctl(server.address, [
        "--cacert",
        file("ca.crt"),
        "--cert",
        file("client.crt"),
        "--key",
        file("client.key"),
        "put",
        "/tls/m",
        "x",
      ]);
      assert.deepEqual([withCert.code, withCert.stdout], [0, "OK\n"], withCert.stderr);
      const store = connectEtcd({
        endpoints: [server.endpoint],
        credentials: {
          rootCertificate: readFileSync(file("ca.crt")),
          certChain: readFileSync(file("client.crt")),
          privateKey: readFileSync(file("client.key")),
        },
      });
      try {
        assert.equal((await store.get("/tls/m"))?.value.toString(), "x");
      } finally {
        await store.close();
      }

      // With auth on, a certificate's common name is the user of a call without a token.
      const certified = (...args: string[]) =>
        runEtcdctl(server.address, [
          "--cacert",
          file("ca.crt"),
          "--cert",
          file("client.crt"),
          "--key",
          file("client.key"),
          ...args,
        ]);
      for (const args of [
        ["user", "add", "root:rootpw"],
        ["user", "add", "cairn-client:unused"],
        ["role", "add", "tls"],
        ["role", "grant-permission", "tls", "readwrite", "/tls/", "--prefix=true"],
        ["user", "grant-role", "cairn-client", "tls"],
        ["auth", "enable"],
      ]) {
        const r = await certified(...args);
        assert.equal(r.code, 0, `etcdctl ${args.join(" ")}: ${r.stderr}`);
      }
      const mine = await certified("put", "/tls/cn", "v");
      assert.deepEqual([mine.code, mine.stdout], [0, "OK\n"], mine.stderr);
      const theirs = await certified("put", "/elsewhere", "v");
      assert.notEqual(theirs.code, 0);
      assert.match(theirs.stderr, /etcdserver: permission denied/);
    } finally {
      await server.stop();
    }
  });

  it("a half-given TLS configuration exits 2 naming the flags", () => {
    const dataDir = tempDir();
    dirs.push(dataDir);
    for (const [args, message] of [
      [["--cert-file", file("server.crt")], /--cert-file and --key-file go together/],
      [
        ["--cert-file", file("server.crt"), "--key-file", file("server.key"), "--client-cert-auth"],
        /--client-cert-auth needs --trusted-ca-file/,
      ],
      [["--cert-file", file("missing.crt"), "--key-file", file("server.key")], /--cert-file: cannot read/],
    ] as [string[], RegExp][]) {
      const r = spawnSync(process.execPath, [CLI, "server", "--data-dir", dataDir, ...args], { encoding: "utf8" });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, message);
    }
  });
});
