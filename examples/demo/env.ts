// What every demo process reads from its environment (run.ts sets it).
import { connectEtcd } from "@cairn/etcd";

export const endpoints = (process.env.CAIRN_ENDPOINTS ?? "http://127.0.0.1:2379").split(",");
export const namespace = process.env.CAIRN_NAMESPACE ?? "demo";
export const port = Number(process.env.PORT ?? 0);
export const instanceId = process.env.INSTANCE_ID ?? `${process.pid}`;

export function connect() {
  return connectEtcd({ endpoints });
}

/** The line run.ts waits for. */
export function ready(name: string, url: string): void {
  process.stdout.write(`READY ${name} ${url}\n`);
}
