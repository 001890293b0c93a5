/**
 * Watches a parser-worker.ts thread (issue #34): collects its failures and, if it stops making
 * progress for `stallMs`, stops it and reports the input it was stuck on (a hang).
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { keepFailure, regressionInputs, tally } from './mutator.ts';
import type { ParserJob, ParserMessage } from './parser-worker.ts';

export async function fuzzParser(
  job: Omit<ParserJob, 'current' | 'fixtures'>,
  { stallMs = 30_000 }: { stallMs?: number } = {},
): Promise<string[]> {
  const name = `parser-${job.target}`;
  const current = new SharedArrayBuffer(64 * 1024 + 4);
  const fixtures = regressionInputs(name).map((fixture) => fixture.bytes);
  // The worker loads TypeScript through tsx's loader, registered in the thread before the import.
  const entry = new URL('./parser-worker.ts', import.meta.url).href;
  const tsxPackage = createRequire(import.meta.url).resolve('tsx/package.json');
  const tsx = pathToFileURL(path.join(path.dirname(tsxPackage), 'dist/esm/api/index.mjs')).href;
  const worker = new Worker(
    `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(entry)}); })`,
    {
      eval: true,
      workerData: { ...job, current, fixtures } satisfies ParserJob,
    },
  );
  const failures: string[] = [];
  let done = 0;
  await new Promise<void>((resolve) => {
    let timer = setTimeout(stalled, stallMs);
    function stalled() {
      const view = new DataView(current);
      const input = new Uint8Array(current, 4, view.getUint32(0)).slice();
      failures.push(
        `${name}: no answer within ${stallMs} ms after input ${done} (a hang; input kept in ${keepFailure(name, input)})`,
      );
      void worker.terminate().then(() => resolve());
    }
    worker.on('message', (message: ParserMessage) => {
      clearTimeout(timer);
      timer = setTimeout(stalled, stallMs);
      if (message.type === 'failure') {
        if (failures.length < 20) {
          failures.push(`${name}: ${message.message} (input kept in ${keepFailure(name, message.input)})`);
        }
      } else {
        done = message.done;
        if (message.type === 'done') {
          clearTimeout(timer);
          void worker.terminate().then(() => resolve());
        }
      }
    });
    worker.on('error', (error) => {
      clearTimeout(timer);
      failures.push(`${name}: the worker died after input ${done}: ${error.stack ?? error.message}`);
      resolve();
    });
  });
  tally.set(name, (tally.get(name) ?? 0) + done + fixtures.length);
  return failures;
}
