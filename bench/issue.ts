/**
 * bench/issue (issue #6): certificates per second through the issuing core — CSR parse and
 * checks -> policy -> TBS -> lint -> partition signature -> stored — with a P-256 issuer and leaf,
 * on PGlite and on PostgreSQL, against the partition's raw P-256 signature rate measured in the
 * same run (the ceiling). Run: node --import tsx bench/issue.ts [--seconds N] [--concurrency N]
 *
 * PostgreSQL: uses $DATABASE_URL if set; otherwise starts a throwaway PostgreSQL 15 cluster when
 * /usr/lib/postgresql/15/bin is installed (as the postgres user when run as root); else skipped.
 */
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { initDataDir } from '../src/cli/init.ts';
import { openRuntime } from '../src/cli/runtime.ts';
import { throwawayPostgres } from './support.ts';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '10' }, concurrency: { type: 'string', default: '64' } },
});
const SECONDS = Number(values.seconds);
const CONCURRENCY = Number(values.concurrency);
const logger = pino({ level: 'silent' });
const cli = { id: 'bench', kind: 'cli' as const, policies: '*' as const };

async function timed(label: string, op: () => Promise<unknown>): Promise<number> {
  // Warm up, then run CONCURRENCY loops for SECONDS.
  await Promise.all(Array.from({ length: CONCURRENCY }, () => op()));
  let done = 0;
  const deadline = performance.now() + SECONDS * 1000;
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        await op();
        done += 1;
      }
    }),
  );
  const rate = done / ((performance.now() - started) / 1000);
  // CPU of this process only (the partition is another process): on a shared machine the rate
  // moves with the load, the CPU time per operation much less so.
  const cpu = process.cpuUsage(cpuBefore);
  const cpuPerOp = (cpu.user + cpu.system) / done;
  console.log(
    `${label.padEnd(44)} ${rate.toFixed(0).padStart(7)} /s  (${done} in ${SECONDS}s, ${CONCURRENCY} in flight; ` +
      `${cpuPerOp.toFixed(0)} µs CPU each in this process, ${(1e6 / cpuPerOp).toFixed(0)}/s per core)`,
  );
  return rate;
}

async function benchOn(
  kind: 'pglite' | 'postgres',
  databaseUrl?: string,
): Promise<{ ceiling: number; issue: number }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'signet-bench-'));
  const dataDir = path.join(dir, 'data');
  try {
    await initDataDir({
      dataDir,
      port: 8080,
      publicUrl: 'http://127.0.0.1:8080',
      ...(databaseUrl ? { databaseUrl } : {}),
    });
    const runtime = await openRuntime({ dataDir, logger, ...(databaseUrl ? { databaseUrl } : {}) });
    try {
      const keyFile = path.join(dir, 'leaf.key');
      execFileSync(
        'openssl',
        [
          'req',
          '-new',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:P-256',
          '-nodes',
          '-keyout',
          keyFile,
          '-subj',
          '/CN=bench.example.com',
          '-addext',
          'subjectAltName=DNS:bench.example.com',
          '-outform',
          'DER',
          '-out',
          path.join(dir, 'leaf.csr'),
        ],
        { stdio: 'ignore' },
      );
      const csr = new Uint8Array(readFileSync(path.join(dir, 'leaf.csr')));
      const issuer = runtime.issuers.get('dev-intermediate')!;
      const tbs = new Uint8Array(600).fill(7);
      const ceiling = await timed(`[${kind}] partition P-256 sign (ceiling)`, () =>
        issuer.keyManager.sign({
          key: { id: issuer.keys.certificate.keyInfo.id },
          mechanism: 'ecdsa-sha256',
          purpose: 'other',
          data: tbs,
        }),
      );
      const issue = await timed(`[${kind}] issue: parse+policy+lint+sign+store`, () =>
        runtime.ca.issue({ csr, policy: 'web-server', requester: cli }),
      );
      console.log(`[${kind}] ratio issue/ceiling: ${(issue / ceiling).toFixed(3)}`);
      return { ceiling, issue };
    } finally {
      await runtime.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(
  `bench/issue: ${SECONDS}s per measurement, ${CONCURRENCY} issuances in flight, P-256 issuer and leaf`,
);
await benchOn('pglite');
const pg = await throwawayPostgres();
if (pg) {
  try {
    await benchOn('postgres', pg.url);
  } finally {
    pg.stop();
  }
} else {
  console.log('[postgres] skipped: no DATABASE_URL and no PostgreSQL 15 binaries');
}
