/**
 * Several real Gatehouse processes (`node bin/gatehouse.js serve`) on one PostgreSQL database,
 * behind a small HTTP load balancer that the test steers: round-robin by default, or "the next
 * request(s) go to instance k". The balancer's URL is the issuer of every instance, exactly as
 * behind a real load balancer, and it records which instance served each request, so a test can
 * prove that each step of a flow really ran in another process.
 *
 * Instances are numbered from 1, in the order they were started.
 */
import type { ChildProcess } from 'node:child_process';
import { Agent, createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gatehouse, start } from './gatehouse-process.ts';

/** Hop-by-hop headers (RFC 9110 §7.6.1): a proxy does not forward them. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer'];

/** One request as the balancer forwarded it. */
export interface Served {
  /** Position in the balancer's log (0-based, never reused). */
  seq: number;
  instance: number;
  method: string;
  /** Path and query. */
  url: string;
  /** The upstream status, or 502 when the instance could not be reached. */
  status: number;
}

export interface Balancer {
  /** `http://localhost:PORT` (the issuer, or the admin origin). */
  url: string;
  /** Every forwarded request, oldest first. */
  served: Served[];
  /** Upstream ports, instance k at index k-1. Set when the instances are up. */
  targets: number[];
  /** Round-robin over all instances (the default). */
  roundRobin(): void;
  /** Every request goes to instance `k` until told otherwise. */
  pin(k: number): void;
  /** The next requests go to these instances, one each, before the current mode resumes. */
  next(...instances: number[]): void;
  /** A position in the log, for {@link since}. */
  mark(): number;
  /** The requests forwarded since `mark`. */
  since(mark: number): Served[];
  close(): Promise<void>;
}

/** Starts a balancer on 127.0.0.1, port 0. It answers 503 until it has targets. */
export async function startBalancer(): Promise<Balancer> {
  const agent = new Agent({ keepAlive: true });
  const served: Served[] = [];
  const queue: number[] = [];
  let pinned: number | undefined;
  let turn = 0;
  const balancer = { targets: [] as number[] } as Balancer;

  const choose = (): number => {
    const queued = queue.shift();
    if (queued !== undefined) return queued;
    if (pinned !== undefined) return pinned;
    turn = (turn % balancer.targets.length) + 1;
    return turn;
  };

  const server: Server = createServer((req, res) => {
    if (!balancer.targets.length) {
      res.writeHead(503).end('no instances');
      return;
    }
    const instance = choose();
    const entry: Served = { seq: served.length, instance, method: req.method ?? 'GET', url: req.url ?? '/', status: 0 };
    served.push(entry);
    const headers: IncomingHttpHeaders = { ...req.headers };
    for (const h of HOP_BY_HOP) delete headers[h];
    // The Host header is the balancer's, as a real load balancer forwards it.
    const upstream = httpRequest(
      { host: '127.0.0.1', port: balancer.targets[instance - 1], method: req.method, path: req.url, headers, agent },
      (answer) => {
        entry.status = answer.statusCode ?? 0;
        const back = { ...answer.headers };
        for (const h of HOP_BY_HOP) delete back[h];
        res.writeHead(entry.status, back);
        answer.pipe(res);
      },
    );
    upstream.on('error', (err) => {
      entry.status = 502;
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`instance ${instance} failed: ${err.message}`);
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

  return Object.assign(balancer, {
    url: `http://localhost:${(server.address() as AddressInfo).port}`,
    served,
    roundRobin() {
      pinned = undefined;
      queue.length = 0;
    },
    pin(k: number) {
      queue.length = 0;
      pinned = k;
    },
    next(...instances: number[]) {
      queue.push(...instances);
    },
    mark: () => served.length,
    since: (mark: number) => served.slice(mark),
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  });
}

export interface GatehouseProcess {
  index: number;
  child: ChildProcess;
  /** The public listener, e.g. http://127.0.0.1:PORT (as printed: "Listening: …"). */
  url: string;
  /** The admin listener (as printed: "Admin: … (listening on …)"). */
  adminUrl: string;
  stdout: string;
  stderr: string;
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface InstanceSet {
  /** The public balancer: its URL is GATEHOUSE_ISSUER. */
  lb: Balancer;
  /** The admin balancer: its URL is GATEHOUSE_ADMIN_URL. */
  adminLb: Balancer;
  issuer: string;
  adminUrl: string;
  instances: GatehouseProcess[];
  /** The environment every process (and {@link cli}) gets. */
  env: Record<string, string>;
  /** Runs `gatehouse ...args` with the same environment, to completion. */
  cli(args: string[], timeoutMs?: number): Promise<CommandResult>;
  /** Every process's stderr, labelled, for failure messages. */
  logs(): string;
  /** SIGTERM every process, SIGKILL after `graceMs`; closes the balancers. Safe to call twice. */
  stop(graceMs?: number): Promise<void>;
}

function spawnGatehouse(args: string[], env: Record<string, string>): ChildProcess {
  const child = start(args, env);
  child.stdin!.end();
  return child;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Starts one `gatehouse serve` and resolves once it listens and its /readyz answers 200. */
async function startProcess(index: number, env: Record<string, string>, timeoutMs: number, children: ChildProcess[]): Promise<GatehouseProcess> {
  const child = spawnGatehouse(['serve'], env);
  children.push(child);
  const proc: GatehouseProcess = { index, child, url: '', adminUrl: '', stdout: '', stderr: '' };
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (proc.stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (proc.stderr += d));
  const deadline = Date.now() + timeoutMs;
  const failure = (why: string) => new Error(`instance ${index} ${why}\nstdout:\n${proc.stdout}\nstderr:\n${proc.stderr}`);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(failure(`did not print its listeners within ${timeoutMs} ms`)), timeoutMs);
    const onExit = () => {
      clearTimeout(timer);
      reject(failure(`exited (${child.exitCode ?? child.signalCode}) before listening`));
    };
    child.once('exit', onExit);
    child.stdout!.on('data', () => {
      const listening = /^\s*Listening:\s+(\S+)/m.exec(proc.stdout)?.[1];
      const admin = /^\s*Admin:\s+.*\(listening on (\S+)\)/m.exec(proc.stdout)?.[1];
      if (listening && admin && !proc.url) {
        proc.url = listening;
        proc.adminUrl = admin;
        clearTimeout(timer);
        child.off('exit', onExit);
        resolve();
      }
    });
  });
  for (;;) {
    const ready = await fetch(`${proc.url}/readyz`).then((r) => r.status, () => 0);
    if (ready === 200) return proc;
    if (Date.now() > deadline) throw failure(`was not ready within ${timeoutMs} ms (last /readyz: ${ready})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Starts `count` Gatehouse processes in parallel on the database at `databaseUrl` (migrated
 * already), each on an ephemeral public and admin port, behind one public and one admin balancer.
 */
export async function startInstances(options: {
  databaseUrl: string;
  count?: number;
  env?: Record<string, string>;
  /** Balancers started earlier, when something must know the issuer before the instances start. */
  lb?: Balancer;
  adminLb?: Balancer;
  timeoutMs?: number;
}): Promise<InstanceSet> {
  const count = options.count ?? 3;
  const lb = options.lb ?? (await startBalancer());
  const adminLb = options.adminLb ?? (await startBalancer());
  const env: Record<string, string> = {
    DATABASE_URL: options.databaseUrl,
    PORT: '0',
    GATEHOUSE_HOST: '127.0.0.1',
    GATEHOUSE_ADMIN_PORT: '0',
    GATEHOUSE_ADMIN_HOST: '127.0.0.1',
    GATEHOUSE_ISSUER: lb.url,
    GATEHOUSE_ADMIN_URL: adminLb.url,
    GATEHOUSE_KEY_ENCRYPTION_KEY: '5a'.repeat(32),
    GATEHOUSE_LOG_LEVEL: 'warn',
    GATEHOUSE_MIGRATE_ON_START: 'false',
    GATEHOUSE_KEY_CHECK_INTERVAL: '1s',
    ...options.env,
  };
  const instances: GatehouseProcess[] = [];
  /** Every `serve` process spawned, including any that failed to come up. */
  const children: ChildProcess[] = [];
  let stopped: Promise<void> | undefined;

  const set: InstanceSet = {
    lb,
    adminLb,
    issuer: lb.url,
    adminUrl: adminLb.url,
    instances,
    env,
    async cli(args, timeoutMs = 30_000) {
      const { code, stdout, stderr } = await gatehouse(args, { env, timeoutMs });
      return { code, stdout, stderr };
    },
    logs: () => instances.map((p) => `--- instance ${p.index} (${p.url}) stderr ---\n${p.stderr}`).join('\n'),
    stop(graceMs = 5000) {
      stopped ??= (async () => {
        await Promise.all(
          children.map(async (child) => {
            if (child.exitCode !== null || child.signalCode !== null) return;
            child.kill('SIGTERM');
            const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
            await exited(child);
            clearTimeout(timer);
          }),
        );
        await lb.close();
        await adminLb.close();
      })();
      return stopped;
    },
  };

  const timeoutMs = options.timeoutMs ?? 45_000;
  const started = await Promise.allSettled(Array.from({ length: count }, (_, i) => startProcess(i + 1, env, timeoutMs, children)));
  for (const result of started) if (result.status === 'fulfilled') instances.push(result.value);
  instances.sort((a, b) => a.index - b.index);
  // Processes that failed to come up may still be running: stop everything before reporting.
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await set.stop(1000);
    throw failed.reason;
  }
  lb.targets = instances.map((p) => Number(new URL(p.url).port));
  adminLb.targets = instances.map((p) => Number(new URL(p.adminUrl).port));
  return set;
}
