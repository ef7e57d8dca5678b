/**
 * Child processes (Gatehouse, the ceiling), their start-up time, and what the kernel says about
 * them: CPU time (utime + stime from /proc/<pid>/stat) and peak memory (VmHWM from
 * /proc/<pid>/status, reset between runs through /proc/<pid>/clear_refs).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Clock ticks per second for /proc/<pid>/stat. */
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** CPU seconds (user + system, all threads) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces and parentheses).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the line; here, counting from field 3 (state), 11 and 12.
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** WAL writing and checkpoints serve every database; they count too. */
const SHARED_POSTGRES_WORKERS = /^postgres: (?:[^:]+: )?(walwriter|checkpointer|background writer)/;

/**
 * CPU seconds used so far by each PostgreSQL process serving `database`, by pid: its backends (their
 * process title names the database) and the shared WAL writer, checkpointer and background writer.
 * Other databases' backends (a test suite running alongside) are left out.
 */
export function postgresCpuSnapshot(database: string): Map<number, number> {
  const snapshot = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const title = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      if (!title.startsWith('postgres')) continue;
      if (title.split(' ').includes(database) || SHARED_POSTGRES_WORKERS.test(title)) snapshot.set(Number(entry), cpuSeconds(Number(entry)));
    } catch {
      // The process ended while we looked, or is not ours to read.
    }
  }
  return snapshot;
}

/**
 * CPU seconds PostgreSQL spent between two snapshots: processes alive at the end count from their
 * earlier reading (or from zero when they started in between). A backend that exited in between
 * takes its time with it, so this can only under-count.
 */
export function postgresCpuBetween(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, seconds] of after) total += Math.max(0, seconds - (before.get(pid) ?? 0));
  return total;
}

/** CPU seconds the whole machine has spent busy (all CPUs, from /proc/stat; guest time is inside user). */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) / CLK_TCK;
}

/** Peak resident memory (VmHWM) in bytes since start or since the last {@link resetPeakMemory}. */
export function peakMemoryBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmHWM:\s+(\d+)\s+kB/m.exec(status)?.[1];
  return kb ? Number(kb) * 1024 : 0;
}

/** Current resident memory (VmRSS) in bytes. */
export function residentMemoryBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
  return kb ? Number(kb) * 1024 : 0;
}

/** Resets VmHWM to the current RSS (Linux ≥ 4.0, `echo 5 > clear_refs`). Returns false when not allowed. */
export function resetPeakMemory(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

export interface ServerProcess {
  name: string;
  child: ChildProcess;
  pid: number;
  /** Every process serving (BENCH_INSTANCES > 1: each Gatehouse instance); CPU is summed over them. */
  pids?: number[];
  /** The issuer, http://localhost:PORT (what clients and cookies use). */
  issuer: string;
  /** http://127.0.0.1:PORT, for load generators that must not resolve `localhost`. */
  target: string;
  port: number;
  /** Spawn → first 200 from the discovery document, in milliseconds. */
  startupMs: number;
  /** Peak memory since the server started, across every reset. */
  peakBytes: number;
  /** Resident memory right after start-up. */
  startupRssBytes: number;
  /** Sends `{ type }` over the IPC channel and waits for `{ type: '<type>-done' }`. */
  request(type: string, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();

/** Kills every child still running (synchronously, for process 'exit'). */
export function killAllChildren(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/**
 * Spawns a server and waits for its discovery document to answer 200. The start-up time is
 * measured from just before spawn to that first 200, polling every 10 ms.
 */
export async function startServer(options: {
  name: string;
  command: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
  port: number;
  logFile: string;
  timeoutMs?: number;
  /** Open an IPC channel to the child (for {@link ServerProcess.request}). */
  ipc?: boolean;
}): Promise<ServerProcess> {
  const log = createWriteStream(options.logFile, { flags: 'a' });
  const started = performance.now();
  const child = spawn(options.command, options.args, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: options.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.stdout!.pipe(log, { end: false });
  child.stderr!.pipe(log, { end: false });
  let exited: string | undefined;
  child.once('exit', (code, signal) => {
    exited = `exited with ${signal ?? code}`;
    children.delete(child);
  });

  const issuer = `http://localhost:${options.port}`;
  const target = `http://127.0.0.1:${options.port}`;
  const deadline = started + (options.timeoutMs ?? 30_000);
  let startupMs: number | undefined;
  while (performance.now() < deadline) {
    if (exited) break;
    try {
      const response = await fetch(`${target}/.well-known/oauth-authorization-server`, {
        headers: { host: `localhost:${options.port}` },
        signal: AbortSignal.timeout(1000),
      });
      await response.arrayBuffer();
      if (response.status === 200) {
        startupMs = performance.now() - started;
        break;
      }
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  if (startupMs === undefined) {
    child.kill('SIGKILL');
    throw new Error(`${options.name} did not answer its discovery document (${exited ?? 'timed out'}); see ${options.logFile}`);
  }
  const pid = child.pid!;
  const server: ServerProcess = {
    name: options.name,
    child,
    pid,
    issuer,
    target,
    port: options.port,
    startupMs,
    peakBytes: peakMemoryBytes(pid),
    startupRssBytes: residentMemoryBytes(pid),
    request(type, timeoutMs = 10_000) {
      return new Promise<void>((resolve, reject) => {
        if (!child.send) return reject(new Error(`${options.name} has no IPC channel`));
        const timer = setTimeout(() => {
          child.off('message', onMessage);
          reject(new Error(`${options.name} did not answer "${type}"`));
        }, timeoutMs);
        const onMessage = (message: unknown) => {
          if ((message as { type?: string } | null)?.type !== `${type}-done`) return;
          clearTimeout(timer);
          child.off('message', onMessage);
          resolve();
        };
        child.on('message', onMessage);
        child.send({ type });
      });
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(timer);
      log.end();
    },
  };
  return server;
}

/** Runs a command to completion, feeding `input` on stdin; throws with its output when it fails. */
export async function runCommand(command: string, args: string[], options: { cwd: string; env: Record<string, string>; input?: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.once('error', reject);
    child.once('exit', (code) => {
      children.delete(child);
      if (code === 0) resolve(output);
      else reject(new Error(`${command} ${args.join(' ')} failed (${code}):\n${output}`));
    });
    child.stdin.end(options.input ?? '');
  });
}
