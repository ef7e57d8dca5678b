/**
 * The measured scenarios. Everything but the full flow is driven by autocannon; every response is
 * checked (status, and for token answers the body), and anything unexpected is counted as an error.
 */
import autocannon, { type RequestSpec, type Result } from 'autocannon';
import {
  Browser,
  codeExchangeBody,
  exchangeCode,
  mapConcurrent,
  refreshBody,
  registerClient,
  registrationBody,
  uniqueClientName,
  type RegisteredClient,
  type Target,
} from './oauth.ts';
import { availableParallelism } from 'node:os';
import { cpuSeconds, machineBusySeconds, peakMemoryBytes, postgresCpuBetween, postgresCpuSnapshot, resetPeakMemory, type ServerProcess } from './processes.ts';

export const SCENARIOS = ['refresh', 'code', 'registration', 'discovery', 'jwks', 'flow'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export const SCENARIO_TITLES: Record<ScenarioName, string> = {
  refresh: 'refresh_token grant (rotation)',
  code: 'authorization_code exchange',
  registration: 'registration (DCR)',
  discovery: 'discovery (RFC 8414)',
  jwks: 'JWKS',
  flow: 'full flow (authorize → login → consent → token)',
};

/** What one run measured. Latencies in milliseconds. */
export interface RunMetrics {
  scenario: ScenarioName;
  server: Target['kind'];
  connections: number;
  round: number;
  /** Requests (flows, for `flow`) answered as expected. */
  ok: number;
  /** Everything else: unexpected status or body, socket errors, timeouts. */
  errors: number;
  errorDetail: Record<string, number>;
  seconds: number;
  rps: number;
  p50: number;
  p99: number;
  /** Server process CPU (user + system) per successful request. */
  cpuMsPerRequest: number;
  /** CPU of the PostgreSQL processes serving Gatehouse's database, per successful request (≈0 for the ceiling). */
  dbCpuMsPerRequest: number;
  /** The load generator's own CPU per request (it shares the machine). */
  loadgenCpuMsPerRequest: number;
  /** VmHWM during this run (reset before it when the kernel allows). */
  peakMemoryBytes: number;
  /**
   * Share of the machine's CPU (all cores) used during the run by anything but this server, its
   * PostgreSQL processes and the harness: other programs, and the other server idling. Noise.
   */
  otherCpuShare: number;
}

export interface ServerUnderTest {
  proc: ServerProcess;
  target: Target;
  /** Gatehouse's database: the PostgreSQL CPU spent on it is measured around every run (for both servers, ≈0 for the ceiling). */
  database: string;
  /** Registered web clients nobody has used yet (filled by the registration scenario, topped up as needed). */
  freshClients: RegisteredClient[];
}

/** A refresh-token chain: one grant, whose newest refresh token is `token`. */
export interface Chain {
  clientId: string;
  token: string;
}

export interface MintedCode {
  client: RegisteredClient;
  code: string;
  verifier: string;
}

class ErrorTally {
  readonly detail: Record<string, number> = {};
  count = 0;
  add(what: string | number): void {
    const key = String(what);
    this.detail[key] = (this.detail[key] ?? 0) + 1;
    this.count++;
  }
}

/** The p-th percentile (nearest rank) of an ascending list. */
function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Runs `fn` and measures the server process around it. */
async function measured<T extends { ok: number; seconds: number; p50: number; p99: number; errors: ErrorTally }>(
  server: ServerUnderTest,
  base: Pick<RunMetrics, 'scenario' | 'connections' | 'round'>,
  fn: () => Promise<T>,
): Promise<RunMetrics> {
  const pid = server.proc.pid;
  const pids = server.proc.pids ?? [pid];
  const cpuOf = () => pids.reduce((sum, p) => sum + cpuSeconds(p), 0);
  resetPeakMemory(pid);
  const cpu0 = cpuOf();
  const db0 = postgresCpuSnapshot(server.database);
  const self0 = process.cpuUsage();
  const machine0 = machineBusySeconds();
  const wall0 = performance.now();
  const out = await fn();
  const wall = (performance.now() - wall0) / 1000;
  const machine = machineBusySeconds() - machine0;
  const self = process.cpuUsage(self0);
  const cpu = cpuOf() - cpu0;
  const db = postgresCpuBetween(db0, postgresCpuSnapshot(server.database));
  const other = machine - cpu - db - (self.user + self.system) / 1e6;
  const peak = peakMemoryBytes(pid);
  server.proc.peakBytes = Math.max(server.proc.peakBytes, peak);
  const per = (seconds: number) => (out.ok ? (seconds * 1000) / out.ok : 0);
  return {
    ...base,
    server: server.target.kind,
    ok: out.ok,
    errors: out.errors.count,
    errorDetail: out.errors.detail,
    seconds: out.seconds,
    rps: out.seconds > 0 ? out.ok / out.seconds : 0,
    p50: out.p50,
    p99: out.p99,
    cpuMsPerRequest: per(cpu),
    dbCpuMsPerRequest: per(db),
    loadgenCpuMsPerRequest: per((self.user + self.system) / 1e6),
    peakMemoryBytes: peak,
    otherCpuShare: wall > 0 ? Math.max(0, other) / (wall * availableParallelism()) : 0,
  };
}

/** One autocannon run against `server`; `spec` carries the request and its checks. */
async function cannon(
  server: ServerUnderTest,
  options: { path: string; method: string; connections: number; duration?: number; amount?: number; headers?: Record<string, string>; spec: RequestSpec },
  errors: ErrorTally,
  ok: () => number,
) {
  const instance = autocannon({
    url: `${server.proc.target}${options.path}`,
    connections: options.connections,
    ...(options.amount !== undefined ? { amount: options.amount } : { duration: options.duration ?? 5 }),
    timeout: 10,
    headers: { host: `localhost:${server.proc.port}`, ...options.headers },
    requests: [{ method: options.method, path: options.path, ...options.spec }],
  });
  // autocannon's own histogram keeps whole milliseconds; the 'response' event has the exact time.
  const latencies: number[] = [];
  instance.on('response', (...args: unknown[]) => latencies.push(args[3] as number));
  const result: Result = await instance;
  // Socket errors and timeouts never reach onResponse.
  for (let i = 0; i < result.errors; i++) errors.add(i < result.timeouts ? 'timeout' : 'socket error');
  latencies.sort((a, b) => a - b);
  return { ok: ok(), seconds: result.duration, p50: percentile(latencies, 50), p99: percentile(latencies, 99), errors };
}

export interface RunOptions {
  round: number;
  connections: number;
  duration: number;
}

/**
 * refresh_token grant with rotation. Each chain is used by one request at a time and always
 * presents its newest refresh token. autocannon resets a connection's `context` before every
 * request when the request list has one entry, so chains live in a queue: `setupRequest` takes the
 * chain at its head, `onResponse` puts it back at its tail with its new token, so every chain is used
 * in turn. A chain whose request was still in flight when the run stopped is never used again (its
 * token may or may not have been rotated), so every run gets fresh chains.
 */
export async function runRefresh(server: ServerUnderTest, chains: Chain[], options: RunOptions): Promise<RunMetrics> {
  const pool = [...chains];
  const errors = new ErrorTally();
  let ok = 0;
  return measured(server, { scenario: 'refresh', connections: options.connections, round: options.round }, () =>
    cannon(
      server,
      {
        path: '/token',
        method: 'POST',
        connections: options.connections,
        duration: options.duration,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        spec: {
          setupRequest(request, context) {
            const chain = pool.shift();
            context.chain = chain;
            // Out of chains (only after errors): send a request that must fail, and count it.
            request.body = chain ? refreshBody(chain.clientId, chain.token) : refreshBody('none', 'no-chain-left');
            return request;
          },
          onResponse(status, body, context) {
            const chain = context.chain as Chain | undefined;
            if (!chain) return errors.add('no chain left');
            if (status !== 200) return errors.add(status);
            const token = (JSON.parse(body) as { refresh_token?: unknown; access_token?: unknown });
            if (typeof token.refresh_token !== 'string' || typeof token.access_token !== 'string') return errors.add('200 without tokens');
            chain.token = token.refresh_token;
            pool.push(chain);
            ok++;
          },
        },
      },
      errors,
      () => ok,
    ),
  );
}

/** authorization_code exchange: every request redeems a fresh code; the run ends when they are all used. */
export async function runCodeExchange(server: ServerUnderTest, codes: MintedCode[], options: RunOptions): Promise<RunMetrics> {
  let next = 0;
  const errors = new ErrorTally();
  let ok = 0;
  return measured(server, { scenario: 'code', connections: options.connections, round: options.round }, () =>
    cannon(
      server,
      {
        path: '/token',
        method: 'POST',
        connections: options.connections,
        amount: codes.length,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        spec: {
          setupRequest(request) {
            const minted = codes[next++];
            request.body = minted ? codeExchangeBody(minted.client, minted.code, minted.verifier) : 'grant_type=authorization_code';
            return request;
          },
          onResponse(status, body) {
            if (status !== 200) return errors.add(status);
            const token = JSON.parse(body) as { refresh_token?: unknown; access_token?: unknown };
            if (typeof token.refresh_token !== 'string' || typeof token.access_token !== 'string') return errors.add('200 without tokens');
            ok++;
          },
        },
      },
      errors,
      () => ok,
    ),
  );
}

/** Dynamic registration with a unique client_name per request; the new clients feed the full-flow scenario. */
export async function runRegistration(server: ServerUnderTest, options: RunOptions): Promise<RunMetrics> {
  const errors = new ErrorTally();
  let ok = 0;
  return measured(server, { scenario: 'registration', connections: options.connections, round: options.round }, () =>
    cannon(
      server,
      {
        path: '/register',
        method: 'POST',
        connections: options.connections,
        duration: options.duration,
        headers: { 'content-type': 'application/json' },
        spec: {
          setupRequest(request) {
            request.body = registrationBody(uniqueClientName('bench dcr'));
            return request;
          },
          onResponse(status, body) {
            if (status !== 201) return errors.add(status);
            const client = JSON.parse(body) as { client_id?: unknown; redirect_uris?: unknown };
            if (typeof client.client_id !== 'string' || !Array.isArray(client.redirect_uris)) return errors.add('201 without client_id');
            server.freshClients.push({ client_id: client.client_id, redirect_uri: String(client.redirect_uris[0]) });
            ok++;
          },
        },
      },
      errors,
      () => ok,
    ),
  );
}

/** A GET answered with 200 and a JSON body containing `mustContain`: discovery and JWKS. */
export async function runGet(server: ServerUnderTest, scenario: 'discovery' | 'jwks', options: RunOptions): Promise<RunMetrics> {
  const path = scenario === 'discovery' ? '/.well-known/oauth-authorization-server' : '/jwks';
  const mustContain = scenario === 'discovery' ? '"token_endpoint"' : '"keys"';
  const errors = new ErrorTally();
  let ok = 0;
  return measured(server, { scenario, connections: options.connections, round: options.round }, () =>
    cannon(
      server,
      {
        path,
        method: 'GET',
        connections: options.connections,
        duration: options.duration,
        spec: {
          onResponse(status, body) {
            if (status !== 200) return errors.add(status);
            if (!body.includes(mustContain)) return errors.add('200 with an unexpected body');
            ok++;
          },
        },
      },
      errors,
      () => ok,
    ),
  );
}

/**
 * The whole interactive flow, N workers in a fetch loop: each flow is a new browser (fresh cookie
 * jar) and a client the user has not consented to yet, so it goes authorize → login page → sign in
 * → consent page → allow → code → token. The latency is one whole flow.
 */
export async function runFlows(server: ServerUnderTest, options: RunOptions): Promise<RunMetrics> {
  const errors = new ErrorTally();
  const latencies: number[] = [];
  let inlineRegistrations = 0;
  return measured(server, { scenario: 'flow', connections: options.connections, round: options.round }, async () => {
    const started = performance.now();
    const deadline = started + options.duration * 1000;
    const worker = async () => {
      while (performance.now() < deadline) {
        let client = server.freshClients.pop();
        if (!client) {
          inlineRegistrations++;
          client = await registerClient(server.target, 'bench flow');
        }
        const t0 = performance.now();
        try {
          const browser = new Browser(server.target);
          const { code, verifier, pages } = await browser.authorize(client);
          if (pages.join(',') !== 'login,consent') throw new Error(`pages shown: ${pages.join(',') || 'none'}`);
          await exchangeCode(server.target, client, code, verifier);
          latencies.push(performance.now() - t0);
        } catch (error) {
          errors.add((error as Error).message.slice(0, 120));
        }
      }
    };
    await Promise.all(Array.from({ length: options.connections }, worker));
    const seconds = (performance.now() - started) / 1000;
    if (inlineRegistrations) errors.detail['(clients registered inside the timed loop)'] = inlineRegistrations;
    latencies.sort((a, b) => a - b);
    return { ok: latencies.length, seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99), errors };
  });
}

/** Makes sure at least `count` never-used clients are registered. */
export async function topUpFreshClients(server: ServerUnderTest, count: number): Promise<void> {
  const missing = count - server.freshClients.length;
  if (missing <= 0) return;
  const added = await mapConcurrent(Array.from({ length: missing }), 8, () => registerClient(server.target, 'bench pool'));
  server.freshClients.push(...added);
}

/**
 * Signs `browsers` new browsers in and has each consent, one client after the other, to its share
 * of `clients`; browsers run in parallel. One browser session never has two requests in flight:
 * oidc-provider rotates the session id whenever an interaction completes, and a request of the same
 * session running at that moment fails (at the ceiling a 400; at Gatehouse a 400, or a 500 when it
 * saves the session under its old id: a unique-key violation on the session's uid).
 */
async function consentAll(server: ServerUnderTest, clients: RegisteredClient[], browsers: number) {
  const groups = Array.from({ length: Math.min(browsers, clients.length) }, () => ({ browser: new Browser(server.target), clients: [] as RegisteredClient[] }));
  clients.forEach((client, i) => groups[i % groups.length]!.clients.push(client));
  const consented: Array<{ browser: Browser; client: RegisteredClient; code: string; verifier: string }> = [];
  await Promise.all(
    groups.map(async ({ browser, clients: mine }) => {
      for (const client of mine) {
        const { code, verifier } = await browser.authorize(client);
        consented.push({ browser, client, code, verifier });
      }
    }),
  );
  return consented;
}

/**
 * `count` refresh-token chains, each its own grant (its own client), obtained through the real
 * flow: a browser signs in once, consents to each new client, and the code is exchanged.
 */
export async function mintChains(server: ServerUnderTest, count: number): Promise<Chain[]> {
  await topUpFreshClients(server, count);
  const consented = await consentAll(server, server.freshClients.splice(-count, count), 4);
  return mapConcurrent(consented, 8, async ({ client, code, verifier }) => {
    const tokens = await exchangeCode(server.target, client, code, verifier);
    return { clientId: client.client_id, token: tokens.refresh_token };
  });
}

/**
 * `count` fresh authorization codes through the real flow, spread over `clientCount` clients (one
 * grant each). Once a browser is signed in and has consented, every /authorize for that client
 * answers with a code at once (a web client, a live session, remembered consent). Each of the
 * `browsers` browsers mints its share one code after the other; browsers run in parallel (see
 * consentAll for why one session never has two requests in flight).
 */
export async function mintCodes(
  server: ServerUnderTest,
  count: number,
  clientCount: number,
  browsers = 16,
): Promise<{ codes: MintedCode[]; requestsPerCode: number }> {
  const n = Math.max(1, Math.min(clientCount, count));
  await topUpFreshClients(server, n);
  const consented = await consentAll(server, server.freshClients.splice(-n, n), browsers);
  const codes: MintedCode[] = consented.map(({ client, code, verifier }) => ({ client, code, verifier }));
  const byBrowser = new Map<Browser, RegisteredClient[]>();
  for (const { browser, client } of consented) byBrowser.set(browser, [...(byBrowser.get(browser) ?? []), client]);
  const groups = [...byBrowser.entries()];
  const remaining = Math.max(0, count - codes.length);
  let requests = 0;
  await Promise.all(
    groups.map(async ([browser, clients], g) => {
      const quota = Math.floor(remaining / groups.length) + (g < remaining % groups.length ? 1 : 0);
      for (let i = 0; i < quota; i++) {
        const client = clients[i % clients.length]!;
        const result = await browser.authorize(client);
        requests += result.requests;
        codes.push({ client, code: result.code, verifier: result.verifier });
      }
    }),
  );
  return { codes, requestsPerCode: remaining ? requests / remaining : 0 };
}
