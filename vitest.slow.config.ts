import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/slow/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    // bin/signet.js, as spawned by the tests, runs the TypeScript sources rather than dist/.
    env: { SIGNET_RUN_SOURCES: '1' },
    pool: 'forks',
    passWithNoTests: false,
    testTimeout: 300_000,
    hookTimeout: 120_000,
  },
});
