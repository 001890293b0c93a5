import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/api/app.ts';
import { createLogger } from '../../src/api/logger.ts';
import { initDataDir } from '../../src/cli/init.ts';
import { openRuntime, type Runtime } from '../../src/cli/runtime.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { hasTool } from '../helpers/tools.ts';

const haveOpenssl = hasTool('openssl', ['version']);

describe.skipIf(!haveOpenssl)('the dev root CRL', () => {
  let dir: string;
  let dataDir: string;
  let runtime: Runtime | undefined;
  const clock = fixedClock(new Date(Math.floor(Date.now() / 1000) * 1000));

  const open = async () => {
    runtime = await openRuntime({
      dataDir,
      clock,
      revocation: true,
      logger: createLogger({ level: 'silent' }),
    });
    const r = runtime;
    return createApp({
      clock,
      logger: createLogger({ level: 'silent' }),
      ca: r.ca,
      apiKeys: r.repositories.apiKeys,
      idempotency: r.repositories.idempotency,
      certificates: r.repositories.certificates,
      issuers: r.repositories.issuers,
      policies: r.policies,
      audit: r.repositories.audit,
      readiness: { database: () => r.database.ping(), partition: async () => ({ state: 'unsealed' }) },
      ...(r.revocation ? { revocation: r.revocation } : {}),
    });
  };

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-root-crl-'));
    dataDir = path.join(dir, 'data');
    await initDataDir({ dataDir, port: 0, publicUrl: 'http://127.0.0.1:8080', clock });
  }, 120_000);

  afterAll(async () => {
    await runtime?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is served at the URL the intermediate names', async () => {
    const app = await open();
    await runtime!.revocation!.scheduler.idle();
    const response = await app.request('/crl/dev-root.crl');
    expect(response.status).toBe(200);
    expect(readFileSync(path.join(dataDir, 'signet.yaml'), 'utf8')).toContain('crl:');
  });
});
