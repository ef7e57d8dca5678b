/**
 * Starts the real Gatehouse app on a loopback port with a fresh database, the way `gatehouse serve`
 * builds it. The issuer is http://localhost:PORT.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { buildApp, type BuiltApp, type BuildOptions } from '../../src/app/deps.ts';
import { loadConfig, type Config } from '../../src/config/config.ts';
import { createLogger } from '../../src/http/logger.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';

export interface TestApp extends BuiltApp {
  issuer: string;
  /** The admin listener's origin. */
  adminUrl: string;
  server: Server;
  adminServer: Server;
  database: TestDatabase;
  config: Config;
  /** Rebuilds the app on the same listeners, as a running server does when its keys change. */
  reload(): Promise<void>;
  close(): Promise<void>;
}

export const TEST_PASSWORD = 'correct horse battery staple';

export async function startTestApp(
  options: { env?: Record<string, string>; database?: TestDatabase; testOnly?: BuildOptions; logDestination?: NodeJS.WritableStream } = {},
): Promise<TestApp> {
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  let adminHandler: typeof handler = handler;
  const server = createServer((req, res) => handler(req, res));
  const adminServer = createServer((req, res) => adminHandler(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => adminServer.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const issuer = `http://localhost:${port}`;
  const adminUrl = `http://localhost:${(adminServer.address() as AddressInfo).port}`;
  const config = loadConfig({
    GATEHOUSE_ISSUER: issuer,
    GATEHOUSE_ADMIN_URL: adminUrl,
    GATEHOUSE_LOG_LEVEL: 'silent',
    GATEHOUSE_KEY_ENCRYPTION_KEY: '11'.repeat(32),
    // Most tests are about the OAuth flows, not onboarding: clients are approved on arrival.
    // test/integration/client-approval.test.ts runs with the default, manual approval.
    GATEHOUSE_CLIENT_APPROVAL: 'automatic',
    // Every test registers from 127.0.0.1; the per-address limit is tested on its own.
    GATEHOUSE_REGISTRATIONS_PER_HOUR: '100000',
    ...options.env,
  });
  const database = options.database ?? (await createTestDatabase());
  const logger = createLogger(config.logLevel, options.logDestination);
  const built = await buildApp(config, database, logger, options.testOnly);
  handler = built.app.callback();
  adminHandler = built.adminApp.callback();
  return {
    ...built,
    issuer,
    adminUrl,
    server,
    adminServer,
    database,
    config,
    async reload() {
      const rebuilt = await buildApp(config, database, logger, options.testOnly);
      handler = rebuilt.app.callback();
      adminHandler = rebuilt.adminApp.callback();
      Object.assign(this, rebuilt);
    },
    async close() {
      for (const s of [server, adminServer]) {
        s.closeAllConnections();
        await new Promise<void>((resolve) => s.close(() => resolve()));
      }
      if (!options.database) await database.close();
    },
  };
}

/** Registers the MCP server used by most tests, and a user. */
export async function seed(app: TestApp, options: { uri?: string; email?: string } = {}) {
  const resource = await app.resources.add({
    uri: options.uri ?? 'https://mcp.example.com',
    name: 'Example MCP',
    scopes: [
      { name: 'files:read', description: 'Read your files' },
      { name: 'files:write', description: 'Change your files' },
    ],
    defaultScopes: ['files:read'],
    accessTokenTtl: 600,
  });
  const account = await app.accounts.create(options.email ?? 'alice@example.com', TEST_PASSWORD);
  return { resource, account };
}
