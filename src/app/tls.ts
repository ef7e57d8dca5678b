/**
 * Native TLS for both listeners (issue 4 §4), from certificate and key files. The files are checked
 * for changes periodically and, when they change, loaded into the running servers' secure context,
 * so a renewal (certbot, cert-manager) needs no restart. A broken renewal keeps the old context and
 * says so in the log: the server never stops serving because a new file is half-written.
 */
import { readFile, stat } from 'node:fs/promises';
import { createServer as createHttpServer, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createSecureContext } from 'node:tls';
import type { Logger } from 'pino';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  /** Modification times, to notice a renewal. */
  version: string;
}

export async function loadTlsMaterial(files: TlsFiles): Promise<TlsMaterial> {
  const read = async (path: string, what: string) => {
    try {
      return await readFile(path);
    } catch (err) {
      throw new Error(`cannot read the TLS ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const [cert, key] = await Promise.all([read(files.certFile, 'certificate', ), read(files.keyFile, 'key')]);
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new Error(`the TLS certificate ${files.certFile} and key ${files.keyFile} cannot be used together: ${(err as Error).message}`);
  }
  return { cert, key, version: await tlsVersion(files) };
}

async function tlsVersion(files: TlsFiles): Promise<string> {
  const [c, k] = await Promise.all([stat(files.certFile), stat(files.keyFile)]);
  return `${c.mtimeMs}:${c.size}|${k.mtimeMs}:${k.size}`;
}

/** An http server, or an https one with the given material (TLS 1.2 at least). */
export function createListener(handler: RequestListener, tls: TlsMaterial | undefined): Server | HttpsServer {
  if (!tls) return createHttpServer(handler);
  return createHttpsServer({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }, handler);
}

/**
 * Reloads the certificate into the servers when its files changed. Returns whether it reloaded.
 */
export async function reloadTlsIfChanged(
  files: TlsFiles,
  current: { version: string },
  servers: HttpsServer[],
  logger: Logger,
): Promise<boolean> {
  let version: string;
  try {
    version = await tlsVersion(files);
  } catch (err) {
    logger.warn({ event: 'tls.reload_failed', err }, 'TLS files are unreadable; still serving the loaded certificate');
    return false;
  }
  if (version === current.version) return false;
  try {
    const material = await loadTlsMaterial(files);
    for (const server of servers) server.setSecureContext({ cert: material.cert, key: material.key });
    current.version = material.version;
    logger.info({ event: 'tls.reloaded', cert: files.certFile }, 'TLS certificate changed: reloaded');
    return true;
  } catch (err) {
    logger.warn({ event: 'tls.reload_failed', err }, 'the new TLS files are not usable; still serving the loaded certificate');
    return false;
  }
}
