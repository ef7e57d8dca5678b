/**
 * Streams audit events as JSON lines to a SIEM-friendly sink: `stdout`, or a file (appended).
 * One line per committed event, with the fields documented in docs/audit-events.md; the `hash` ties
 * each line to the database's chain, so the stream doubles as an external witness of it.
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
