/**
 * Streams audit events as JSON lines to a SIEM-friendly sink: `stdout`, or a file (appended).
 * One line per committed event, and one per committed checkpoint (`gatehouse.audit.checkpoint`,
 * sealer.ts), with the fields documented in docs/audit-events.md. Each event line carries its row's
 * `mac`; the checkpoint lines, kept outside the database, are what `gatehouse audit verify
 * --checkpoints` compares the database's checkpoints with: a trail cut back, its checkpoints deleted
 * with it, no longer matches them.
 */
import { createWriteStream, type WriteStream } from 'node:fs';

export interface AuditSink {
  write(event: Record<string, unknown>): void;
  close(): Promise<void>;
}

export function createAuditSink(spec: string): AuditSink | undefined {
  if (spec === 'off') return undefined;
  if (spec === 'stdout' || spec === 'stderr') {
    const out = spec === 'stdout' ? process.stdout : process.stderr;
    return {
      write: (event) => void out.write(`${JSON.stringify(event)}\n`),
      close: async () => {},
    };
  }
  const stream: WriteStream = createWriteStream(spec, { flags: 'a', mode: 0o640 });
  stream.on('error', () => {}); // reported by the server's health, never fatal to a request
  return {
    write: (event) => void stream.write(`${JSON.stringify(event)}\n`),
    close: () => new Promise<void>((resolve) => stream.end(() => resolve())),
  };
}
