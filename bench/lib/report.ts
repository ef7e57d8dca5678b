/**
 * Turns the runs into medians, checks them against issue 6's targets, and writes
 * bench/results/latest.json and the results section of bench/README.md.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { SqlCount } from '../sql-counts.ts';
import { SCENARIOS, SCENARIO_TITLES, type RunMetrics, type ScenarioName } from './load.ts';

export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  node: string;
  postgres: string;
  oidcProvider: string;
  autocannon: string;
  kernel: string;
}

export interface Side {
  rps: number;
  p50: number;
  p99: number;
  cpuMsPerRequest: number;
  dbCpuMsPerRequest: number;
  /** Highest VmHWM seen in any round of this scenario. */
  peakMemoryBytes: number;
  ok: number;
  errors: number;
  errorDetail: Record<string, number>;
  rounds: number;
}

export interface SummaryRow {
  scenario: ScenarioName;
  connections: number;
  gatehouse: Side | undefined;
  ceiling: Side | undefined;
  /** Gatehouse requests/s ÷ ceiling requests/s (medians). */
  ratio: number | undefined;
  /** Statements per operation at Gatehouse (BEGIN/COMMIT included), from the query log. */
  sqlStatements: number | undefined;
  sqlStatementsWithoutTransactionControl: number | undefined;
}

export interface TargetRow {
  target: string;
  measured: string;
  met: boolean | undefined;
}

export interface BenchResults {
  date: string;
  wallSeconds: number;
  machine: MachineInfo;
  settings: { rounds: number; durationSeconds: number; connections: number[]; scenarios: ScenarioName[]; warmupSeconds: number; instances?: number };
  /** Median of the start-up samples. */
  startupMs: { gatehouse: number; ceiling: number };
  startupSamplesMs: { gatehouse: number[]; ceiling: number[] };
  /** Resident memory right after start-up. */
  startupRssBytes: { gatehouse: number; ceiling: number };
  /** 1-minute load average at the start and the end of the run (the load generator included). */
  loadAverage: { start: number; end: number };
  /** Share of the machine's CPU in use during the second before the run started. */
  busyBeforeRun: number;
  /** One argon2id verification with Gatehouse's parameters, in ms: the sign-in cost the ceiling does not have. */
  argon2VerifyMs: number;
  peakMemoryBytes: { gatehouse: number; ceiling: number };
  summary: SummaryRow[];
  targets: TargetRow[];
  sqlCounts: SqlCount[];
  runs: RunMetrics[];
  notes: string[];
}

/** Which SQL count belongs to which scenario. */
export const SQL_OPERATION: Record<ScenarioName, string> = {
  refresh: 'refresh',
  code: 'code exchange',
  registration: 'registration',
  discovery: 'discovery',
  jwks: 'jwks',
  flow: 'flow',
};

function median(values: number[]): number {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function side(runs: RunMetrics[]): Side | undefined {
  if (!runs.length) return undefined;
  const errorDetail: Record<string, number> = {};
  for (const r of runs) for (const [k, v] of Object.entries(r.errorDetail)) errorDetail[k] = (errorDetail[k] ?? 0) + v;
  return {
    rps: median(runs.map((r) => r.rps)),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    cpuMsPerRequest: median(runs.map((r) => r.cpuMsPerRequest)),
    dbCpuMsPerRequest: median(runs.map((r) => r.dbCpuMsPerRequest)),
    peakMemoryBytes: Math.max(...runs.map((r) => r.peakMemoryBytes)),
    ok: runs.reduce((n, r) => n + r.ok, 0),
    errors: runs.reduce((n, r) => n + r.errors, 0),
    errorDetail,
    rounds: runs.length,
  };
}

export function summarize(runs: RunMetrics[], connections: number[], scenarios: readonly ScenarioName[], sqlCounts: SqlCount[]): SummaryRow[] {
  const rows: SummaryRow[] = [];
  for (const scenario of SCENARIOS) {
    if (!scenarios.includes(scenario)) continue;
    const sql = sqlCounts.find((c) => c.operation === SQL_OPERATION[scenario]);
    for (const conns of connections) {
      const pick = (server: 'gatehouse' | 'ceiling') => side(runs.filter((r) => r.scenario === scenario && r.connections === conns && r.server === server));
      const gatehouse = pick('gatehouse');
      const ceiling = pick('ceiling');
      rows.push({
        scenario,
        connections: conns,
        gatehouse,
        ceiling,
        ratio: gatehouse && ceiling && ceiling.rps > 0 ? gatehouse.rps / ceiling.rps : undefined,
        sqlStatements: sql?.statements,
        sqlStatementsWithoutTransactionControl: sql?.withoutTransactionControl,
      });
    }
  }
  return rows;
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;
const fmtRps = (n: number) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1));
const fmtMs = (n: number) => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));

/** Issue 6's targets, judged from this run. Throughput targets use each server's best connection count. */
export function judgeTargets(
  summary: SummaryRow[],
  sqlCounts: SqlCount[],
  startupMs: number,
  peakBytes: number,
): TargetRow[] {
  const rows: TargetRow[] = [];
  const best = (scenario: ScenarioName, who: 'gatehouse' | 'ceiling') => {
    const candidates = summary.filter((r) => r.scenario === scenario && r[who]);
    if (!candidates.length) return undefined;
    return candidates.reduce((a, b) => (b[who]!.rps > a[who]!.rps ? b : a));
  };
  const errorsOf = (scenario: ScenarioName) => summary.filter((r) => r.scenario === scenario).reduce((n, r) => n + (r.gatehouse?.errors ?? 0) + (r.ceiling?.errors ?? 0), 0);
  const withErrors = (scenario: ScenarioName, text: string) => (errorsOf(scenario) ? `${text} — ⚠ ${errorsOf(scenario)} errors` : text);

  for (const [scenario, label] of [
    ['refresh', 'Refresh with rotation ≥ 0.6 × ceiling'],
    ['code', 'Code exchange ≥ 0.6 × ceiling'],
  ] as const) {
    const g = best(scenario, 'gatehouse');
    const c = best(scenario, 'ceiling');
    if (!g || !c) {
      rows.push({ target: label, measured: 'not measured', met: undefined });
      continue;
    }
    const ratio = g.gatehouse!.rps / c.ceiling!.rps;
    rows.push({
      target: label,
      measured: withErrors(scenario, `${ratio.toFixed(2)} × (${fmtRps(g.gatehouse!.rps)} req/s at ${g.connections} conns vs ${fmtRps(c.ceiling!.rps)} at ${c.connections})`),
      met: ratio >= 0.6 && errorsOf(scenario) === 0,
    });
    if (scenario === 'refresh') {
      rows.push({
        target: 'Refresh with rotation ≥ 2,500 req/s',
        measured: withErrors(scenario, `${fmtRps(g.gatehouse!.rps)} req/s (${g.connections} conns)`),
        met: g.gatehouse!.rps >= 2500 && errorsOf(scenario) === 0,
      });
    }
  }
  for (const [operation, label] of [
    ['refresh', '≤ 6 SQL round trips per refresh (audit included)'],
    ['code exchange', '≤ 6 SQL round trips per code exchange (audit included)'],
  ] as const) {
    const c = sqlCounts.find((s) => s.operation === operation);
    rows.push({
      target: label,
      measured: c ? `${c.statements} (${c.withoutTransactionControl} without BEGIN/COMMIT)` : 'not measured',
      met: c ? c.statements <= 6 : undefined,
    });
  }
  const at16 = summary.filter((r) => r.connections === 16 && r.scenario !== 'flow' && r.gatehouse);
  if (at16.length) {
    const worst = at16.reduce((a, b) => (b.gatehouse!.p99 > a.gatehouse!.p99 ? b : a));
    rows.push({
      target: 'p99 < 25 ms at 16 connections (every autocannon scenario)',
      measured: at16.map((r) => `${r.scenario} ${fmtMs(r.gatehouse!.p99)}`).join(', ') + ` ms (worst: ${SCENARIO_TITLES[worst.scenario]})`,
      met: worst.gatehouse!.p99 < 25,
    });
  } else {
    rows.push({ target: 'p99 < 25 ms at 16 connections', measured: 'not measured', met: undefined });
  }
  rows.push({ target: 'Peak memory < 250 MB', measured: `${mb(peakBytes)} (VmHWM, whole run)`, met: peakBytes < 250 * 1024 * 1024 });
  rows.push({ target: 'Start-up to first answered request < 1.5 s', measured: `${(startupMs / 1000).toFixed(2)} s (median of the starts)`, met: startupMs < 1500 });
  return rows;
}

/** The Markdown that goes between the results markers in bench/README.md. */
export function resultsMarkdown(results: BenchResults): string {
  const m = results.machine;
  const lines: string[] = [];
  lines.push(
    `Run of ${results.date} (${Math.round(results.wallSeconds)} s): ${m.nproc} × ${m.cpuModel}, Node ${m.node}, ${m.postgres.split(' on ')[0]}, oidc-provider ${m.oidcProvider}, autocannon ${m.autocannon}, Linux ${m.kernel}.`,
    `${results.settings.rounds} interleaved rounds × ${results.settings.durationSeconds} s per scenario and server (code exchange: as many requests as codes minted); medians shown.`,
    `Start-up (spawn → first 200 on discovery, median of ${results.startupSamplesMs.gatehouse.length} starts): Gatehouse ${(results.startupMs.gatehouse / 1000).toFixed(2)} s ` +
      `(${results.startupSamplesMs.gatehouse.map((ms) => (ms / 1000).toFixed(2)).join(', ')}), ceiling ${(results.startupMs.ceiling / 1000).toFixed(2)} s. ` +
      `Memory: Gatehouse ${mb(results.startupRssBytes.gatehouse)} resident after start-up, ${mb(results.peakMemoryBytes.gatehouse)} at peak (VmHWM); ceiling ${mb(results.startupRssBytes.ceiling)} and ${mb(results.peakMemoryBytes.ceiling)}. ` +
      `One argon2id verification (Gatehouse's sign-in, not paid by the ceiling): ${results.argon2VerifyMs.toFixed(1)} ms. The machine was ${(results.busyBeforeRun * 100).toFixed(0)} % busy in the second before the run.`,
    '',
    '![requests/s and p99 per scenario, Gatehouse beside the ceiling](chart.svg)',
    '',
    '| Scenario | Conns | Gatehouse req/s | Ceiling req/s | Ratio | Gatehouse p50 / p99 (ms) | Ceiling p50 / p99 (ms) | Gatehouse CPU ms/req (+ PostgreSQL) | Ceiling CPU ms/req | SQL statements | Errors (G / C) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const r of results.summary) {
    const g = r.gatehouse;
    const c = r.ceiling;
    const unit = r.scenario === 'flow' ? ' flows' : '';
    lines.push(
      [
        SCENARIO_TITLES[r.scenario],
        r.connections,
        g ? `${fmtRps(g.rps)}${unit}` : '–',
        c ? `${fmtRps(c.rps)}${unit}` : '–',
        r.ratio !== undefined ? r.ratio.toFixed(2) : '–',
        g ? `${fmtMs(g.p50)} / ${fmtMs(g.p99)}` : '–',
        c ? `${fmtMs(c.p50)} / ${fmtMs(c.p99)}` : '–',
        g ? `${g.cpuMsPerRequest.toFixed(2)} (+ ${g.dbCpuMsPerRequest.toFixed(2)})` : '–',
        c ? c.cpuMsPerRequest.toFixed(2) : '–',
        r.sqlStatements !== undefined ? `${r.sqlStatements} (${r.sqlStatementsWithoutTransactionControl})` : '–',
        `${g?.errors ?? '–'} / ${c?.errors ?? '–'}`,
      ].join(' | ').replace(/^/, '| ') + ' |',
    );
  }
  lines.push(
    '',
    'SQL statements: per operation at Gatehouse, BEGIN/COMMIT included (in brackets: without them), from `bench/sql-counts.ts`. The full flow counts every request of one flow, and its rate is flows per second.',
    '',
    '#### Targets (issue 6)',
    '',
    '| Target | Measured | Met |',
    '|---|---|:-:|',
    ...results.targets.map((t) => `| ${t.target} | ${t.measured} | ${t.met === undefined ? '–' : t.met ? '✅ met' : '❌ missed'} |`),
    '',
    '#### SQL statements per operation (Gatehouse)',
    '',
    '| Operation | Statements | Without BEGIN/COMMIT | First time (cold caches) | Statements, in order |',
    '|---|---:|---:|---:|---|',
    ...results.sqlCounts.map((c) => `| ${c.operation} | ${c.statements} | ${c.withoutTransactionControl} | ${c.first.statements} | ${compress(c.summary).join(', ') || '–'} |`),
  );
  const flow = results.sqlCounts.find((c) => c.operation === 'flow');
  if (flow?.steps) lines.push('', `Full flow, statements per request: ${flow.steps.map((s) => `${s.step} ${s.statements}`).join(' → ')}.`);
  const errors = results.summary.filter((r) => (r.gatehouse?.errors ?? 0) + (r.ceiling?.errors ?? 0) > 0);
  if (errors.length) {
    lines.push('', '**Errors seen:**', '');
    for (const r of errors) {
      for (const who of ['gatehouse', 'ceiling'] as const) {
        const s = r[who];
        if (s?.errors) lines.push(`- ${SCENARIO_TITLES[r.scenario]} @ ${r.connections}, ${who}: ${Object.entries(s.errorDetail).map(([k, v]) => `${k} × ${v}`).join('; ')}`);
      }
    }
  }
  if (results.notes.length) lines.push('', ...results.notes.map((n) => `> ${n}`));
  return lines.join('\n');
}

/** "select clients, select clients" → "select clients ×2". */
function compress(list: string[]): string[] {
  const out: string[] = [];
  for (const item of list) {
    const last = out[out.length - 1];
    const m = last ? /^(.*?)(?: ×(\d+))?$/.exec(last) : null;
    if (m && m[1] === item) out[out.length - 1] = `${item} ×${Number(m[2] ?? 1) + 1}`;
    else out.push(item);
  }
  return out.map((s) => `\`${s}\``);
}

export const RESULTS_START = '<!-- results:start -->';
export const RESULTS_END = '<!-- results:end -->';

/** Replaces what is between the markers in the README (appending a results section when they are missing). */
export function updateReadme(readmePath: string, markdown: string): void {
  let text = readFileSync(readmePath, 'utf8');
  const start = text.indexOf(RESULTS_START);
  const end = text.indexOf(RESULTS_END);
  const block = `${RESULTS_START}\n${markdown}\n${RESULTS_END}`;
  if (start === -1 || end === -1 || end < start) text = `${text.trimEnd()}\n\n## Results\n\n${block}\n`;
  else text = `${text.slice(0, start)}${block}${text.slice(end + RESULTS_END.length)}`;
  writeFileSync(readmePath, text);
}

export function writeJson(file: string, results: BenchResults): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
}
