import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['test/slow/**', 'node_modules/**'],
    setupFiles: ['test/setup.ts'],
    // bin/signet.js, as spawned by the tests, runs the TypeScript sources rather than dist/.
    env: { SIGNET_RUN_SOURCES: '1' },
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
