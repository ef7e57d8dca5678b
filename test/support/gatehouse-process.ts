/**
 * The real `gatehouse` command as a child process, the way an operator runs it: its environment,
 * output, exit, and the ports it listens on.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { settings } from '../../src/config/config.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = path.join(ROOT, 'bin/gatehouse.js');

export interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();
// Whatever happens to the test worker, no Gatehouse process outlives it.
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/**
 * The environment of a child: this process's, minus every Gatehouse setting (so nothing leaks in
 * from the shell running the tests), plus `env`.
 */
export function childEnv(env: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...process.env };
  for (const s of Object.values(settings)) delete out[s.env];
  Object.assign(out, { GATEHOUSE_LOG_LEVEL: 'silent' }, env);
  for (const [k, v] of Object.entries(out)) if (v === undefined) delete out[k];
  return out;
}

/** Starts `gatehouse ...args`; {@link killAll} ends whatever is still running. */
export function start(args: string[], env: Record<string, string | undefined>): ChildProcess {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: childEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** SIGKILLs every child still running (for afterEach/afterAll). */
export function killAll(): void {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
}

/** Runs `gatehouse ...args` to completion, feeding it `input` on stdin; killed after `timeoutMs`. */
export function gatehouse(
  args: string[],
  options: { env?: Record<string, string | undefined>; input?: string; timeoutMs?: number } = {},
): Promise<Result> {
  const child = start(args, options.env ?? {});
  child.stdin!.end(options.input ?? '');
  return collect(child, options.timeoutMs ?? 25_000, `gatehouse ${args.join(' ')}`);
}

/**
 * oidc-provider prints a warning on Node.js versions older than the LTS it targets (the Docker
 * image uses a current LTS; the tests may run on Node 20). It is not Gatehouse's output.
 */
export function withoutRuntimeWarning(stderr: string): string {
  return stderr.replace(/^oidc-provider WARNING: Unsupported runtime\..*\n/m, '');
}

export function collect(child: ChildProcess, timeoutMs: number, what: string): Promise<Result> {
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr: withoutRuntimeWarning(stderr) });
    });
  });
}

export function freePort(): Promise<number> {
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

/** Resolves when `child` prints `text` on stdout; rejects if it exits first or after `timeoutMs`. */
export function waitForOutput(child: ChildProcess, text: string, timeoutMs: number): Promise<string> {
  let stdout = '';
  let stderr = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${text}" within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`)), timeoutMs);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      if (stdout.includes(text)) {
        clearTimeout(timer);
        resolve(stdout);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`exited (${code ?? signal}) before "${text}"\nstdout: ${stdout}\nstderr: ${stderr}`));
    });
  });
}

export function exitOf(child: ChildProcess, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    const timer = setTimeout(() => reject(new Error(`did not exit within ${timeoutMs} ms`)), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}
