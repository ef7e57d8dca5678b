/**
 * `npm run bench`: Gatehouse against the in-memory ceiling of its own engine, on this machine,
 * over loopback. See bench/README.md for what is measured and how to read it.
 *
 * 1. Counts SQL statements per operation, in-process (bench/sql-counts.ts).
 * 2. Creates a fresh PostgreSQL database, seeds it with the `gatehouse` CLI, starts
 *    `node bin/gatehouse.js serve` and bench/ceiling-server.ts as child processes, timing start-up.
 * 3. Warms both up, then runs interleaved rounds of every scenario at each connection count.
 * 4. Writes bench/results/latest.json, bench/chart.svg and the results section of bench/README.md.
 *
 * Environment: BENCH_DATABASE_URL, BENCH_ROUNDS (3), BENCH_DURATION (5 s), BENCH_CONNECTIONS
 * ("16,64"), BENCH_SCENARIOS (all), BENCH_WARMUP (2 s), BENCH_MAX_CODES (10000), BENCH_INSTANCES (1); diagnostics:
 * BENCH_CPU_PROFILE, BENCH_PG_SETTINGS.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hashPassword, verifyPassword } from '../src/accounts/passwords.ts';
import { countSqlStatements } from './sql-counts.ts';
import { renderChart } from './lib/chart.ts';
import { createBenchDatabase, postgresVersion, setDatabaseParameters, type BenchDatabase } from './lib/database.ts';
import { AUTHORIZATION_CODE_TTL_SECONDS, gatehouseEnv } from './lib/gatehouse-env.ts';
import {
  SCENARIOS,
  SCENARIO_TITLES,
  mintChains,
  mintCodes,
  runCodeExchange,
  runFlows,
  runGet,
  runRefresh,
  runRegistration,
  topUpFreshClients,
  type RunMetrics,
  type ScenarioName,
  type ServerUnderTest,
} from './lib/load.ts';
import { startTcpBalancer } from './lib/balancer.ts';
import { RESOURCE, USER } from './lib/oauth.ts';
import { freePort, killAllChildren, machineBusySeconds, resetPeakMemory, runCommand, startServer, type ServerProcess } from './lib/processes.ts';
import { judgeTargets, resultsMarkdown, summarize, updateReadme, writeJson, type BenchResults, type MachineInfo } from './lib/report.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BENCH_DIR = path.join(ROOT, 'bench');
const RESULTS_DIR = path.join(BENCH_DIR, 'results');

function intSetting(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) throw new Error(`${name} must be a number ≥ ${min} (got "${raw}")`);
  return n;
}

const settings = {
  rounds: intSetting('BENCH_ROUNDS', 3, 1),
  duration: intSetting('BENCH_DURATION', 5, 1),
  warmup: intSetting('BENCH_WARMUP', 2, 0),
  maxCodes: intSetting('BENCH_MAX_CODES', 10000, 100),
  instances: intSetting('BENCH_INSTANCES', 1, 1),
  connections: (process.env.BENCH_CONNECTIONS ?? '16,64').split(',').map((s) => Number(s.trim())).filter((n) => Number.isInteger(n) && n > 0),
  scenarios: (process.env.BENCH_SCENARIOS ? process.env.BENCH_SCENARIOS.split(',').map((s) => s.trim()) : [...SCENARIOS]) as ScenarioName[],
};
for (const s of settings.scenarios) if (!SCENARIOS.includes(s)) throw new Error(`BENCH_SCENARIOS: unknown scenario "${s}" (known: ${SCENARIOS.join(', ')})`);
if (!settings.connections.length) throw new Error('BENCH_CONNECTIONS must list connection counts, such as 16,64');

/** Registration first in every round: the clients it registers feed the other scenarios. */
const EXECUTION_ORDER: ScenarioName[] = ['registration', 'refresh', 'code', 'discovery', 'jwks', 'flow'];

const started = performance.now();
const log = (line: string) => process.stdout.write(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);

// Clean-up, whatever happens: children are killed, the database dropped.
let database: BenchDatabase | undefined;
const servers: ServerProcess[] = [];
let cleaning: Promise<void> | undefined;
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    await Promise.allSettled(servers.map((s) => s.stop()));
    killAllChildren();
    if (database) await database.drop().catch((err: unknown) => log(`could not drop ${database!.name}: ${String(err)}`));
  })();
  return cleaning;
}
process.on('exit', killAllChildren);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping servers and dropping the database`);
    void cleanUp().finally(() => process.exit(130));
  });
}

function machineInfo(postgres: string): MachineInfo {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const version = (pkg: string) => (JSON.parse(readFileSync(path.join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version;
  return {
    nproc: os.availableParallelism(),
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown',
    node: process.versions.node,
    postgres,
    oidcProvider: version('oidc-provider'),
    autocannon: version('autocannon'),
    kernel: os.release(),
  };
}

/** Seeds through the public CLI, as an operator would: the MCP server, then the user (password on stdin). */
async function seedGatehouse(env: Record<string, string>): Promise<void> {
  const cli = (args: string[], input?: string) => runCommand(process.execPath, ['bin/gatehouse.js', ...args], { cwd: ROOT, env, ...(input !== undefined ? { input } : {}) });
  await cli(['resource', 'add', RESOURCE, '--name', 'Bench MCP', '--scope', 'files:read=Read your files', '--scope', 'files:write=Change your files', '--default-scope', 'files:read', '--access-token-ttl', '10m']);
  await cli(['user', 'add', USER.email], `${USER.password}\n`);
}

const fmt = (r: RunMetrics) =>
  `${r.rps.toFixed(r.rps >= 100 ? 0 : 1).padStart(6)} ${r.scenario === 'flow' ? 'flows' : 'req'}/s  p50 ${r.p50.toFixed(1).padStart(6)} ms  p99 ${r.p99.toFixed(1).padStart(6)} ms  ` +
  `cpu ${r.cpuMsPerRequest.toFixed(2)} ms/req (+db ${r.dbCpuMsPerRequest.toFixed(2)})  ${(r.peakMemoryBytes / 1048576).toFixed(0)} MB  ${r.ok} ok` +
  (r.otherCpuShare > 0.1 ? `  (others used ${(r.otherCpuShare * 100).toFixed(0)} % of the machine)` : '') +
  (r.errors ? `  ⚠ ${r.errors} errors ${JSON.stringify(r.errorDetail)}` : '');

/** Median time of one argon2id verification with Gatehouse's parameters: what a sign-in costs that the ceiling does not pay. */
async function argon2VerifyMs(): Promise<number> {
  const hash = await hashPassword(USER.password);
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    if (!(await verifyPassword(hash, USER.password))) throw new Error('argon2 verification failed');
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b)[3]!;
}

async function main(): Promise<void> {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const notes: string[] = [];
  const pg = await postgresVersion();
  const machine = machineInfo(pg);
  const loadAtStart = os.loadavg()[0]!;
  // How busy the machine is right now (one second of /proc/stat): the load average lags by minutes.
  const busy0 = machineBusySeconds();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const busyAtStart = (machineBusySeconds() - busy0) / machine.nproc;
  log(`machine: ${machine.nproc} × ${machine.cpuModel}, Node ${machine.node}, ${pg.split(' on ')[0]}; ${(busyAtStart * 100).toFixed(0)} % busy before the run`);
  if (busyAtStart > 0.25) {
    const warning = `The machine was ${(busyAtStart * 100).toFixed(0)} % busy before the run started: other work shares the CPUs, so the figures are noisy.`;
    log(`⚠ ${warning}`);
    notes.push(warning);
  }
  const argon2Ms = await argon2VerifyMs();
  log(`one argon2id verification (Gatehouse's sign-in): ${argon2Ms.toFixed(1)} ms`);
  log(`settings: ${settings.rounds} rounds × ${settings.duration} s, connections ${settings.connections.join('/')}, scenarios ${settings.scenarios.join(', ')}`);

  // 1. SQL statements per operation, before anything else uses the machine.
  log('counting SQL statements per operation (in-process)…');
  const { counts: sqlCounts } = await countSqlStatements((line) => log(line));

  // 2. Database, seed, servers.
  database = await createBenchDatabase();
  log(`database ${database.name}`);
  // BENCH_PG_SETTINGS="synchronous_commit=off,…": a diagnostic, recorded in the results.
  const pgSettings = Object.fromEntries(
    (process.env.BENCH_PG_SETTINGS ?? '').split(',').map((s) => s.trim()).filter(Boolean).map((s) => [s.slice(0, s.indexOf('=')), s.slice(s.indexOf('=') + 1)]),
  );
  if (Object.keys(pgSettings).length) {
    await setDatabaseParameters(database.name, pgSettings);
    const note = `PostgreSQL parameters changed for this run's database: ${Object.entries(pgSettings).map(([k, v]) => `${k}=${v}`).join(', ')}.`;
    log(note);
    notes.push(note);
  }
  const [gPort, gAdminPort, cPort] = [await freePort(), await freePort(), await freePort()];
  const env = gatehouseEnv({ databaseUrl: database.url, port: gPort, adminPort: gAdminPort, keyEncryptionKey: randomBytes(32).toString('hex') });
  await seedGatehouse(env);
  const logFile = (name: string) => {
    const file = path.join(RESULTS_DIR, `${name}.log`);
    writeFileSync(file, '');
    return file;
  };
  // BENCH_CPU_PROFILE=1: both servers write V8 CPU profiles when they stop (bench/results/profiles/<server>/;
  // summarise one with bench/profile-summary.ts).
  const profile = (name: string) => (process.env.BENCH_CPU_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${path.join(RESULTS_DIR, 'profiles', name)}`] : []);
  /**
   * Start-up is one number from a noisy machine: each server is started STARTS times (the first
   * Gatehouse start also generates its keys) and the median is reported; the last one stays up.
   */
  const STARTS = 3;
  async function startMeasured(options: Parameters<typeof startServer>[0]): Promise<{ proc: ServerProcess; samples: number[] }> {
    const samples: number[] = [];
    for (let i = 1; ; i++) {
      const proc = await startServer(options);
      samples.push(proc.startupMs);
      if (i === STARTS) {
        servers.push(proc);
        log(`${options.name} up in ${samples.map((ms) => ms.toFixed(0)).join(' / ')} ms (pid ${proc.pid}, ${(proc.startupRssBytes / 1048576).toFixed(0)} MB resident)`);
        return { proc, samples };
      }
      await proc.stop();
    }
  }
  /**
   * BENCH_INSTANCES > 1: that many Gatehouse processes on the one database, each listening on a port
   * of its own, behind a round-robin TCP balancer on `gPort` whose URL is their issuer (as behind a
   * real load balancer). Start-up is measured once per process, not three times.
   */
  async function startInstances(count: number): Promise<{ proc: ServerProcess; samples: number[] }> {
    const procs: ServerProcess[] = [];
    for (let i = 1; i <= count; i++) {
      const [port, adminPort] = [await freePort(), await freePort()];
      const instanceEnv = { ...env, PORT: String(port), GATEHOUSE_ADMIN_PORT: String(adminPort), GATEHOUSE_ISSUER: `http://localhost:${gPort}` };
      const proc = await startServer({ name: `gatehouse-${i}`, command: process.execPath, args: [...profile(`gatehouse-${i}`), 'bin/gatehouse.js', 'serve'], cwd: ROOT, env: instanceEnv, port, logFile: logFile(`gatehouse-${i}`) });
      servers.push(proc);
      procs.push(proc);
    }
    const balancer = await startTcpBalancer(gPort, procs.map((p) => p.port));
    const first = procs[0]!;
    log(`gatehouse: ${count} instances (pids ${procs.map((p) => p.pid).join(', ')}) behind a round-robin TCP balancer on :${gPort}`);
    notes.push(`Gatehouse ran as ${count} instances on one database behind a round-robin TCP balancer in the benchmark's process (its CPU counts as the load generator's); Gatehouse CPU is summed over the instances.`);
    const proc: ServerProcess = {
      ...first,
      name: 'gatehouse',
      pids: procs.map((p) => p.pid),
      issuer: `http://localhost:${gPort}`,
      target: `http://127.0.0.1:${gPort}`,
      port: gPort,
      async stop() {
        await balancer.close();
        await Promise.all(procs.map((p) => p.stop()));
      },
    };
    return { proc, samples: procs.map((p) => p.startupMs) };
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const gatehouseStart =
    settings.instances === 1
      ? await startMeasured({ name: 'gatehouse', command: process.execPath, args: [...profile('gatehouse'), 'bin/gatehouse.js', 'serve'], cwd: ROOT, env, port: gPort, logFile: logFile('gatehouse') })
      : await startInstances(settings.instances);
  const gatehouseProc = gatehouseStart.proc;
  const ceilingStart = await startMeasured({
    name: 'ceiling',
    command: process.execPath,
    args: [...profile('ceiling'), '--import', 'tsx', 'bench/ceiling-server.ts'],
    cwd: ROOT,
    env: { NODE_ENV: 'production', PORT: String(cPort), BENCH_RESOURCE: RESOURCE, BENCH_CODE_TTL: String(AUTHORIZATION_CODE_TTL_SECONDS) },
    port: cPort,
    logFile: logFile('ceiling'),
    ipc: true,
  });
  const ceilingProc = ceilingStart.proc;
  if (!resetPeakMemory(gatehouseProc.pid)) notes.push('The kernel did not allow resetting VmHWM between runs: per-run peak memory is the peak since start.');

  const gatehouse: ServerUnderTest = { proc: gatehouseProc, target: { kind: 'gatehouse', issuer: gatehouseProc.issuer }, database: database.name, freshClients: [] };
  const ceiling: ServerUnderTest = { proc: ceilingProc, target: { kind: 'ceiling', issuer: ceilingProc.issuer }, database: database.name, freshClients: [] };

  /** Best code-exchange rate seen so far, per server: sizes the next batch of codes. */
  const codeRate = new Map<string, number>();
  /** Full flows per second seen last, per server: sizes the pool of never-used clients. */
  const flowRate = new Map<string, number>();

  async function runOne(server: ServerUnderTest, scenario: ScenarioName, connections: number, round: number, duration: number): Promise<RunMetrics> {
    const options = { round, connections, duration };
    const kind = server.target.kind;
    if (server.proc.child.exitCode !== null || server.proc.child.signalCode !== null) throw new Error(`${kind} is no longer running (see bench/results/${kind}.log)`);
    switch (scenario) {
      case 'refresh': {
        // Four chains per connection, used in turn: each grant collects fewer rotated tokens, which
        // oidc-provider's memory adapter scans on every save (setGrantMembers) — it would slow the ceiling.
        const chains = await mintChains(server, connections * 4);
        return runRefresh(server, chains, options);
      }
      case 'code': {
        // Enough codes to keep the server busy for about `duration` seconds at its best rate so far.
        const rate = codeRate.get(kind) ?? 500;
        const count = Math.max(connections * 4, Math.min(settings.maxCodes, Math.round(rate * duration * 1.1)));
        const { codes, requestsPerCode } = await mintCodes(server, count, 32);
        if (requestsPerCode > 1.01) log(`  (${kind}: minting took ${requestsPerCode.toFixed(2)} requests per code: some authorizations asked for consent again)`);
        const metrics = await runCodeExchange(server, codes, options);
        if (metrics.rps > (codeRate.get(kind) ?? 0)) codeRate.set(kind, metrics.rps);
        return metrics;
      }
      case 'registration':
        return runRegistration(server, options);
      case 'discovery':
      case 'jwks':
        return runGet(server, scenario, options);
      case 'flow': {
        await topUpFreshClients(server, Math.ceil((flowRate.get(kind) ?? 100) * duration * 1.5) + connections);
        const metrics = await runFlows(server, options);
        if (metrics.rps > 0) flowRate.set(kind, metrics.rps);
        return metrics;
      }
    }
  }

  const order = EXECUTION_ORDER.filter((s) => settings.scenarios.includes(s));

  // 3. Warm-up: every scenario once on each server, not recorded (JIT, caches, connection pools).
  if (settings.warmup > 0) {
    log(`warm-up: ${settings.warmup} s per scenario and server`);
    for (const scenario of order) {
      for (const server of [gatehouse, ceiling]) {
        try {
          const r = await runOne(server, scenario, settings.connections[0]!, 0, settings.warmup);
          log(`  warm-up ${scenario.padEnd(12)} ${server.target.kind.padEnd(9)} ${fmt(r)}`);
        } catch (error) {
          log(`  warm-up ${scenario} ${server.target.kind} failed: ${(error as Error).message}`);
        }
      }
    }
  }

  // 4. Interleaved rounds: who goes first alternates, so slow moments of the machine hit both.
  const runs: RunMetrics[] = [];
  for (let round = 1; round <= settings.rounds; round++) {
    log(`round ${round}/${settings.rounds}`);
    // Nothing of the warm-up or an earlier round is used again: the ceiling starts each round with
    // an empty store (its heap would otherwise grow by hundreds of MB per round and slow it down).
    // Gatehouse's database keeps everything.
    await ceilingProc.request('reset');
    ceiling.freshClients.length = 0;
    for (const [si, scenario] of order.entries()) {
      for (const [ci, connections] of settings.connections.entries()) {
        const pair = (round + si + ci) % 2 === 0 ? [gatehouse, ceiling] : [ceiling, gatehouse];
        for (const server of pair) {
          let metrics: RunMetrics;
          try {
            metrics = await runOne(server, scenario, connections, round, settings.duration);
          } catch (error) {
            const message = (error as Error).message;
            if (/no longer running/.test(message)) throw error;
            metrics = {
              scenario, server: server.target.kind, connections, round, ok: 0, errors: 1, errorDetail: { [message.slice(0, 160)]: 1 },
              seconds: 0, rps: 0, p50: 0, p99: 0, cpuMsPerRequest: 0, dbCpuMsPerRequest: 0, loadgenCpuMsPerRequest: 0, peakMemoryBytes: 0, otherCpuShare: 0,
            };
          }
          runs.push(metrics);
          log(`  ${scenario.padEnd(12)} @${String(connections).padEnd(3)} ${server.target.kind.padEnd(9)} ${fmt(metrics)}`);
        }
      }
    }
  }

  // 5. Results.
  const wallSeconds = (performance.now() - started) / 1000;
  const loadAtEnd = os.loadavg()[0]!;
  const noisy = runs.filter((r) => r.otherCpuShare > 0.1);
  if (noisy.length) {
    const worst = noisy.reduce((a, b) => (b.otherCpuShare > a.otherCpuShare ? b : a));
    const note =
      `In ${noisy.length} of ${runs.length} runs, other processes used more than 10 % of the machine's CPU ` +
      `(worst: ${(worst.otherCpuShare * 100).toFixed(0)} %, ${worst.scenario} @ ${worst.connections} on ${worst.server}, round ${worst.round}); those figures are lower than they would be on a quiet machine.`;
    log(`⚠ ${note}`);
    notes.push(note);
  }
  const summary = summarize(runs, settings.connections, settings.scenarios, sqlCounts);
  const results: BenchResults = {
    date: new Date().toISOString(),
    wallSeconds,
    machine,
    settings: { rounds: settings.rounds, durationSeconds: settings.duration, connections: settings.connections, scenarios: settings.scenarios, warmupSeconds: settings.warmup, instances: settings.instances },
    startupMs: { gatehouse: median(gatehouseStart.samples), ceiling: median(ceilingStart.samples) },
    startupSamplesMs: { gatehouse: gatehouseStart.samples, ceiling: ceilingStart.samples },
    startupRssBytes: { gatehouse: gatehouseProc.startupRssBytes, ceiling: ceilingProc.startupRssBytes },
    loadAverage: { start: loadAtStart, end: loadAtEnd },
    busyBeforeRun: busyAtStart,
    argon2VerifyMs: argon2Ms,
    peakMemoryBytes: { gatehouse: gatehouseProc.peakBytes, ceiling: ceilingProc.peakBytes },
    summary,
    targets: judgeTargets(summary, sqlCounts, median(gatehouseStart.samples), gatehouseProc.peakBytes),
    sqlCounts,
    runs,
    notes,
  };
  writeJson(path.join(RESULTS_DIR, 'latest.json'), results);
  // The published table and chart come from complete runs only: every scenario, no diagnostics.
  const complete = SCENARIOS.every((s) => settings.scenarios.includes(s)) && !process.env.BENCH_CPU_PROFILE && !Object.keys(pgSettings).length && settings.instances === 1;
  if (complete) {
    writeFileSync(path.join(BENCH_DIR, 'chart.svg'), renderChart(results));
    updateReadme(path.join(BENCH_DIR, 'README.md'), resultsMarkdown(results));
  } else {
    log('partial or diagnostic run: bench/README.md and bench/chart.svg left as they were');
  }

  log('results:');
  for (const row of summary) {
    const g = row.gatehouse;
    const c = row.ceiling;
    log(
      `  ${SCENARIO_TITLES[row.scenario].padEnd(48)} @${String(row.connections).padEnd(3)} gatehouse ${g ? g.rps.toFixed(0).padStart(6) : '     –'}  ceiling ${c ? c.rps.toFixed(0).padStart(6) : '     –'}  ratio ${row.ratio?.toFixed(2) ?? '–'}` +
        `  p99 ${g ? g.p99.toFixed(1) : '–'} / ${c ? c.p99.toFixed(1) : '–'} ms  errors ${g?.errors ?? 0}/${c?.errors ?? 0}`,
    );
  }
  for (const t of results.targets) log(`  ${t.met === undefined ? '–' : t.met ? 'met   ' : 'MISSED'}  ${t.target}: ${t.measured}`);
  log(`done in ${Math.round(wallSeconds)} s: bench/results/latest.json${complete ? ', bench/chart.svg, bench/README.md' : ''}`);
}

try {
  await main();
  await cleanUp();
  process.exit(0);
} catch (error) {
  log(`benchmark failed: ${(error as Error).stack ?? String(error)}`);
  await cleanUp();
  process.exit(1);
}
