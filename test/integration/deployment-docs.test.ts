/**
 * docs/deployment.md cannot drift from the code it describes: every setting it names is in the
 * config schema, every `gatehouse …` command it shows is in the CLI's usage text (the real
 * `gatehouse --help`), every metric it names is one Gatehouse exports, every compose service it
 * addresses exists in docker-compose.yml, its links resolve, and its YAML examples parse.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { settings } from '../../src/config/config.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');
const DOC = 'docs/deployment.md';
const doc = read(DOC);

const KNOWN_ENV = new Set(Object.values(settings).map((s) => s.env));

/** Text a reader would copy: fenced code blocks and `inline code`. */
function codeOf(markdown: string): string[] {
  const blocks = [...markdown.matchAll(/^```[^\n]*\n([\s\S]*?)^```/gm)].map((m) => m[1]!);
  const prose = markdown.replace(/^```[^\n]*\n[\s\S]*?^```/gm, '');
  const spans = [...prose.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!);
  return [...blocks, ...spans];
}

const fencedBlocks = (lang: string) => [...doc.matchAll(new RegExp(`^\`\`\`${lang}\\n([\\s\\S]*?)^\`\`\``, 'gm'))].map((m) => m[1]!);

/** `gatehouse --help`: command → its subcommands (empty for a command without any). */
function cliCommands(): Map<string, Set<string>> {
  const result = spawnSync(process.execPath, ['bin/gatehouse.js', '--help'], { cwd: ROOT, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
  expect(result.status, result.stderr).toBe(0);
  const commands = new Map<string, Set<string>>();
  for (const line of result.stdout.split('\n')) {
    // A command line is indented by exactly two spaces; its synopsis ends at the first run of spaces.
    const m = /^ {2}(\S.*?)(?: {2,}|$)/.exec(line);
    if (!m) continue;
    const [command, sub] = m[1]!.split(/\s+/);
    if (!command || !/^[a-z][a-z-]*$/.test(command)) continue;
    const subs = commands.get(command) ?? new Set<string>();
    if (sub && /^[a-z][a-z-]*$/.test(sub)) subs.add(sub);
    commands.set(command, subs);
  }
  return commands;
}

/** `gatehouse CMD [SUB]` as the docs write it: bare, through bin/gatehouse.js or npm, or `docker compose run … gatehouse-N CMD`. */
function commandMentions(): { text: string; command: string; sub: string | undefined }[] {
  const word = '([a-z][a-z-]*)(?![\\w-])';
  const patterns = [
    new RegExp(`(?:^|[\\s\`$(])gatehouse(?: --)? ${word}(?: ${word})?`, 'gm'),
    new RegExp(`bin/gatehouse\\.js ${word}(?: ${word})?`, 'gm'),
    new RegExp(`docker compose run(?: +-{1,2}[A-Za-z-]+)* +gatehouse-\\d+ ${word}(?: ${word})?`, 'gm'),
  ];
  const out: { text: string; command: string; sub: string | undefined }[] = [];
  for (const code of codeOf(doc)) {
    for (const pattern of patterns) {
      for (const m of code.matchAll(pattern)) out.push({ text: m[0].trim(), command: m[1]!, sub: m[2] });
    }
  }
  return out;
}

describe(DOC, () => {
  test('exists, and the README links to it', () => {
    expect(existsSync(path.join(ROOT, DOC))).toBe(true);
    expect(read('README.md')).toContain('](docs/deployment.md)');
  });

  test('every GATEHOUSE_* setting it names exists in src/config/config.ts', () => {
    const named = new Set([...doc.matchAll(/\bGATEHOUSE_[A-Z0-9_]+/g)].map((m) => m[0]));
    const unknown = [...named].filter((name) =>
      name.endsWith('_') ? ![...KNOWN_ENV].some((env) => env.startsWith(name)) : !KNOWN_ENV.has(name),
    );
    expect(unknown, `not in settings of src/config/config.ts: ${unknown.join(', ')}`).toEqual([]);
    // The ones an operator cannot do without are explained, not just listed.
    for (const env of ['GATEHOUSE_ISSUER', 'GATEHOUSE_TRUST_PROXY', 'GATEHOUSE_KEY_ENCRYPTION_KEY', 'GATEHOUSE_TLS_CERT_FILE', 'GATEHOUSE_SHUTDOWN_TIMEOUT', 'GATEHOUSE_DATABASE_POOL_SIZE', 'GATEHOUSE_SWEEP_INTERVAL']) {
      expect(named, `${env} is not mentioned`).toContain(env);
    }
  });

  test('every `gatehouse` command it shows exists (gatehouse --help)', () => {
    const commands = cliCommands();
    expect(commands.get('migrate'), 'the usage text was not understood').toBeDefined();
    const mentions = commandMentions();
    expect(mentions.length).toBeGreaterThan(5);
    const unknown = mentions.filter(({ command, sub }) => {
      const subs = commands.get(command);
      if (!subs) return true;
      return subs.size > 0 && sub !== undefined && !subs.has(sub);
    });
    expect(
      [...new Set(unknown.map((u) => u.text))],
      `not in \`gatehouse --help\` (src/cli/main.ts): ${[...new Set(unknown.map((u) => u.text))].join('; ')}`,
    ).toEqual([]);
  }, 60_000);

  test('every metric it names is one Gatehouse exports', () => {
    const sources = readdirSync(path.join(ROOT, 'src/metrics'))
      .filter((f) => f.endsWith('.ts'))
      .map((f) => readFileSync(path.join(ROOT, 'src/metrics', f), 'utf8'))
      .join('\n');
    // Metrics are named in `inline code` (database names such as gatehouse_restored appear in shell blocks).
    const spans = [...doc.replace(/^```[^\n]*\n[\s\S]*?^```/gm, '').matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!);
    // PostgreSQL roles (migration 0009, the compose file's init script) are named the same way: not metrics.
    const roleSources = [read('docker-compose.yml'), ...readdirSync(path.join(ROOT, 'migrations')).map((f) => read(`migrations/${f}`))].join('\n');
    const roles = new Set([...roleSources.matchAll(/CREATE ROLE (\w+)/g)].map((m) => m[1]!));
    const named = new Set(spans.flatMap((span) => [...span.matchAll(/\bgatehouse_[a-z_]+\b/g)].map((m) => m[0])).filter((name) => !roles.has(name)));
    expect(named.size).toBeGreaterThan(0);
    // Metric names are written as `${METRICS_PREFIX}name` in the source.
    const unknown = [...named].filter((name) => !sources.includes(name.replace(/^gatehouse_/, '${METRICS_PREFIX}')) && !sources.includes(`'${name}'`));
    expect(unknown, `not defined in src/metrics: ${unknown.join(', ')}`).toEqual([]);
  });

  test('every docker compose service it addresses exists in docker-compose.yml', () => {
    const services = Object.keys((parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, unknown> }).services);
    const addressed = new Set<string>();
    for (const code of codeOf(doc)) {
      for (const m of code.matchAll(/docker compose (run|exec|cp|up|stop|start|restart|logs)((?: +[^\s#]+)*)/g)) {
        const args = m[2]!.trim().split(/\s+/).filter(Boolean);
        const names: string[] = [];
        for (const arg of args) {
          if (arg.startsWith('-')) continue;
          if (arg === '\\' || arg.startsWith('<') || arg.startsWith('>')) break;
          names.push(m[1] === 'cp' ? arg.split(':')[0]! : arg);
          // run, exec: the first argument is the service, what follows is its command.
          if (['run', 'exec', 'cp'].includes(m[1]!)) break;
        }
        for (const name of names) addressed.add(name);
      }
    }
    expect(addressed.size).toBeGreaterThan(0);
    const unknown = [...addressed].filter((name) => !services.includes(name));
    expect(unknown, `not services of docker-compose.yml: ${unknown.join(', ')}`).toEqual([]);
  });

  test('its links to files of the repository and to its own sections resolve', () => {
    const anchors = new Set(
      [...doc.matchAll(/^#{1,6} (.+)$/gm)].map((m) =>
        m[1]!
          .trim()
          .toLowerCase()
          .replace(/[^\p{L}\p{N}\s-]/gu, '')
          .replace(/\s/g, '-'),
      ),
    );
    for (const m of doc.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!;
      if (/^[a-z]+:/.test(target)) continue; // https:, mailto:
      const [file, anchor] = target.split('#');
      if (file) expect(existsSync(path.join(ROOT, 'docs', file)), `${target}: no such file`).toBe(true);
      else expect(anchors, `#${anchor}: no such section`).toContain(anchor);
    }
  });

  test('its YAML examples parse', () => {
    const blocks = fencedBlocks('yaml');
    expect(blocks.length).toBeGreaterThan(0);
    for (const block of blocks) expect(() => parse(block)).not.toThrow();
  });
});
