#!/usr/bin/env node
// Entry point. It runs the compiled dist/ (`npm run build`, which `prepare` runs on `npm ci` and
// `prepack` runs before `npm pack`), so a start does not compile TypeScript. The test suites set
// SIGNET_RUN_SOURCES=1 to run the TypeScript sources through tsx instead (a dev dependency), so
// they always test the sources in front of them, never a stale build; a checkout that was never
// built runs its sources the same way.
import { existsSync } from 'node:fs';

const dist = new URL('../dist/cli/main.js', import.meta.url);
if (process.env.SIGNET_RUN_SOURCES === '1' || !existsSync(dist)) {
  let tsx;
  try {
    tsx = await import('tsx/esm/api');
  } catch {
    console.error('signet: dist/ is missing and tsx is not installed: run `npm run build` first');
    process.exit(1);
  }
  tsx.register();
  await import('../src/cli/main.ts');
} else {
  await import(dist.href);
}
