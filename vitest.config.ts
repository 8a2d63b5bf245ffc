import { defineConfig } from 'vitest/config';

// Unit tests run on sources; integration tests start real PostgreSQL (and later Redis) through
// the global setup and drive the built pgwarden (dist/) with real clients.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/harness/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          // One fork runs the files one after another: they share one PostgreSQL and a 2-core machine.
          pool: 'forks',
          poolOptions: { forks: { singleFork: true } },
        },
      },
    ],
  },
});
