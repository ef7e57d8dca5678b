/**
 * A PostgreSQL cluster of a test's own, made with the installed server's initdb and pg_ctl in a
 * fresh temporary folder, on a free loopback port: a test may stop it, kill it or freeze it
 * (SIGSTOP) without touching the shared database everyone else uses.
 *
 * initdb refuses to run as root, so when the tests run as root (CI does) every server binary runs
 * as the `postgres` OS user, which then owns the folder.
 */
import { execFile as execFileCallback, execFileSync } from 'node:child_process';
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFile = promisify(execFileCallback);

export type StopMode = 'smart' | 'fast' | 'immediate';

export interface ThrowawayCluster {
  /** Connection string for the `postgres` database, as the superuser `postgres` (trust auth). */
  readonly url: string;
  readonly port: number;
  /** The server's log (`pg_ctl -l`): what PostgreSQL said, e.g. "deadlock detected". */
  readonly logFile: string;
  /** Starts the server again (on the same port) and waits until it accepts connections. */
  start(): Promise<void>;
  /** `pg_ctl stop -m MODE`: fast ends sessions cleanly; immediate kills them (crash recovery on start). */
  stop(options?: { mode?: StopMode }): Promise<void>;
  /** Freezes the postmaster and every backend (SIGSTOP): a hung server, or a network that drops packets. */
  pause(): void;
  /** Thaws what {@link pause} froze. */
  resume(): void;
  /** Kills the server however it is (running, stopped, frozen) and removes its folder. Safe to call twice. */
  destroy(): Promise<void>;
}

/** The newest installed server's bin folder (Debian layout: /usr/lib/postgresql/VERSION/bin), else pg_config's. */
export function postgresBinDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => /^\d+(\.\d+)?$/.test(v) && existsSync(join(root, v, 'bin', 'initdb')) && existsSync(join(root, v, 'bin', 'pg_ctl')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions[0]) return join(root, versions[0], 'bin');
  try {
    const dir = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();
    if (existsSync(join(dir, 'initdb'))) return dir;
  } catch {
    // no pg_config either
  }
  throw new Error('no PostgreSQL server binaries found (looked under /usr/lib/postgresql/*/bin and pg_config --bindir)');
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Pids whose parent is `ppid` (from /proc: the backends and helpers of a postmaster). */
function childrenOf(ppid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // "pid (comm) state ppid …": comm may hold spaces or parentheses, so split after the last ')'.
      const ppidField = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppidField === ppid) pids.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

function isOurPostmaster(pid: number, dataDir: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(dataDir);
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

export async function createThrowawayCluster(): Promise<ThrowawayCluster> {
  const bin = postgresBinDir();
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-pg-'));
  const dataDir = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  const asRoot = process.getuid?.() === 0;
  let postmaster: number | undefined;
  let frozen: number[] = [];
  let destroyed = false;

  /** Last resort, synchronous (also run at process exit if the test never got to destroy()). */
  const killAndRemove = () => {
    // Only a postmaster that is still ours (its pid may have been reused since), and its children.
    if (postmaster !== undefined && isOurPostmaster(postmaster, dataDir)) {
      for (const pid of [postmaster, ...childrenOf(postmaster)]) signal(pid, 'SIGKILL');
    }
    frozen = [];
    postmaster = undefined;
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', killAndRemove);

  const run = async (tool: string, args: string[]) => {
    const command = asRoot ? 'runuser' : join(bin, tool);
    const argv = asRoot ? ['-u', 'postgres', '--', join(bin, tool), ...args] : args;
    try {
      return await execFile(command, argv, { timeout: 120_000 });
    } catch (err) {
      const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-2000) : '';
      throw new Error(`${tool} ${args.join(' ')} failed: ${(err as Error).message}\n${log}`, { cause: err });
    }
  };

  try {
    if (asRoot) {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
      chownSync(dir, uid, gid);
    }
    await run('initdb', ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions']);
    appendFileSync(
      join(dataDir, 'postgresql.conf'),
      [
        "listen_addresses = '127.0.0.1'",
        `unix_socket_directories = '${dir}'`,
        // Speed only: no OS crash is simulated, so writes in the page cache survive a killed server.
        // synchronous_commit stays on: an acknowledged commit must survive `-m immediate`, as in production.
        'fsync = off',
        'shared_buffers = 16MB',
        'max_connections = 40',
        '',
      ].join('\n'),
    );
  } catch (err) {
    killAndRemove();
    process.removeListener('exit', killAndRemove);
    throw err;
  }

  let port = 0;
  const start = async () => {
    await run('pg_ctl', ['-D', dataDir, '-l', logFile, '-o', `-p ${port}`, '-w', '-t', '60', 'start']);
    postmaster = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  };
  const resume = () => {
    for (const pid of frozen) signal(pid, 'SIGCONT');
    frozen = [];
  };

  // The free port may be taken between our probe and the server's bind: try a few.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      await start();
      break;
    } catch (err) {
      if (attempt >= 3 || !/could not bind|already in use/i.test((err as Error).message)) {
        killAndRemove();
        process.removeListener('exit', killAndRemove);
        throw err;
      }
    }
  }

  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    logFile,
    start,
    async stop(options = {}) {
      resume();
      await run('pg_ctl', ['-D', dataDir, '-m', options.mode ?? 'fast', '-w', '-t', '60', 'stop']);
      postmaster = undefined;
    },
    pause() {
      if (postmaster === undefined) throw new Error('the cluster is not running');
      // The postmaster first, so that it forks no new backend while we freeze the ones it has.
      signal(postmaster, 'SIGSTOP');
      frozen = [postmaster, ...childrenOf(postmaster)];
      for (const pid of frozen) signal(pid, 'SIGSTOP');
    },
    resume,
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      try {
        resume();
        if (existsSync(join(dataDir, 'postmaster.pid'))) {
          await run('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', '-t', '20', 'stop']).catch(() => {});
        }
      } finally {
        killAndRemove();
        process.removeListener('exit', killAndRemove);
      }
    },
  };
}
