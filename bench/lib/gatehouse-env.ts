/**
 * The settings Gatehouse runs with in the benchmark, as an operator would put them in its
 * environment (every setting: src/config/config.ts). The in-process SQL count uses the same ones.
 */

/**
 * Codes are minted shortly before the run that redeems them; minting thousands takes a few seconds,
 * so both servers get the longest code lifetime Gatehouse allows (the default is 60 s). The lifetime
 * changes no work done per request.
 */
export const AUTHORIZATION_CODE_TTL_SECONDS = 600;

export function gatehouseEnv(options: { databaseUrl: string; port: number; adminPort: number; keyEncryptionKey: string; issuer?: string }): Record<string, string> {
  return {
    NODE_ENV: 'production',
    DATABASE_URL: options.databaseUrl,
    PORT: String(options.port),
    GATEHOUSE_ADMIN_PORT: String(options.adminPort),
    // With several instances, the balancer's URL (BENCH_INSTANCES).
    GATEHOUSE_ISSUER: options.issuer ?? `http://localhost:${options.port}`,
    GATEHOUSE_KEY_ENCRYPTION_KEY: options.keyEncryptionKey,
    // The benchmark's database is created empty for the run; with DATABASE_URL nothing migrates unless asked.
    GATEHOUSE_MIGRATE_ON_START: 'true',
    // Clients that register are approved at once: the benchmark has no administrator to approve them.
    GATEHOUSE_CLIENT_APPROVAL: 'automatic',
    // Every request comes from 127.0.0.1, and most from a handful of clients: limits far above the load.
    GATEHOUSE_REGISTRATIONS_PER_HOUR: '100000',
    GATEHOUSE_TOKEN_REQUESTS_PER_MINUTE: '1000000',
    GATEHOUSE_AUTHORIZATION_CODE_TTL: String(AUTHORIZATION_CODE_TTL_SECONDS),
    GATEHOUSE_LOG_LEVEL: 'warn',
    GATEHOUSE_AUDIT_SINK: 'off',
  };
}
