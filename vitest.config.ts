import { defineConfig } from 'vitest/config';

// Two projects: the whole suite on real PostgreSQL, and the flows that matter on the embedded
// PGlite (GATEHOUSE_TEST_DB=pglite; see test/support/database.ts).
export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Builds dist/resource-server, the `gatehouse/resource-server` export the examples import.
    globalSetup: ['test/support/build-kit.ts'],
    projects: [
      {
        extends: true,
        test: { name: 'postgres', include: ['test/**/*.test.ts'], env: { GATEHOUSE_TEST_DB: 'postgres' } },
      },
      {
        extends: true,
        test: {
          name: 'pglite',
          include: ['test/integration/authorization-code.test.ts', 'test/integration/refresh.test.ts', 'test/integration/rotation-grace.test.ts', 'test/e2e/mcp-sdk.test.ts', 'test/contract/adapter.test.ts', 'test/contract/unit-of-work.test.ts', 'test/integration/sql-count.test.ts'],
          env: { GATEHOUSE_TEST_DB: 'pglite' },
        },
      },
    ],
  },
});
