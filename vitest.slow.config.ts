import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/slow/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    pool: 'forks',
    passWithNoTests: false,
    testTimeout: 300_000,
    hookTimeout: 120_000,
  },
});
