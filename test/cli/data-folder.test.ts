import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRuntime } from '../../src/cli/runtime.ts';
import { createCertificatesRepository } from '../../src/db/certificates.repository.ts';
import { fixedClock } from '../../src/lib/clock.ts';

/**
 * Issue #17's smaller truths, through the command line on a folder `signet init` made:
 * - init into a folder that already exists makes it private, as it does a new one;
 * - `signet audit reconcile --json` prints JSON and nothing else on standard output, `--dry-run`
 *   reports exactly what the run then does, and signatures never stored exit 1 saying what to do.
 */
const SIGNET = path.resolve('bin/signet.js');
const signet = (args: string[]) =>
  spawnSync(process.execPath, [SIGNET, ...args], { encoding: 'utf8', timeout: 120_000 });

let dir: string;
let dataDir: string;
let initOutput: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'signet-data-folder-'));
  dataDir = path.join(dir, 'existing');
  // An operator made the folder beforehand, with the usual umask.
  mkdirSync(dataDir, { mode: 0o755 });
  const init = signet(['init', '--data', dataDir]);
  expect(init.stderr).toBe('');
  expect(init.status).toBe(0);
  initOutput = init.stdout;
}, 180_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const modeOf = (file: string) => statSync(file).mode & 0o777;

describe('signet init', () => {
  it('says what it is doing before each long step (issue #33: 11 s went by in silence)', () => {
    const steps = [
      'creating the partitions root and issuing',
      'starting both partitions to generate the dev root and intermediate keys',
      `creating the database in ${path.join(dataDir, 'db')} (PGlite) and applying the migrations`,
      'database ready; recording the issuers',
      'published the first dev-root CRL',
    ].map((step) => initOutput.indexOf(`signet init: ${step}`));
    expect(steps.every((at) => at >= 0)).toBe(true);
    expect([...steps].sort((a, b) => a - b)).toEqual(steps);
  });
});

describe('signet init into an existing folder', () => {
  it('makes the folder 0700 and signet.yaml and the database private', () => {
    expect(modeOf(dataDir)).toBe(0o700);
    expect(modeOf(path.join(dataDir, 'signet.yaml'))).toBe(0o600);
    expect(modeOf(path.join(dataDir, 'db'))).toBe(0o700);
    const open = readdirSync(path.join(dataDir, 'db'), { recursive: true, withFileTypes: true })
      .map((entry) => path.join(entry.parentPath, entry.name))
      .filter((file) => modeOf(file) & 0o077);
    expect(open).toEqual([]);
  });
});

describe('signet audit reconcile', () => {
  let unstored: string;
  let abandoned: string;

  beforeAll(async () => {
    // A certificate signed but never stored (the CA died between the two) and a reservation
    // abandoned before signing, both older than the grace period.
    const runtime = await openRuntime({ dataDir, logger: pino({ level: 'silent' }) });
    try {
      const old = createCertificatesRepository({
        db: runtime.database.db,
        clock: fixedClock(new Date(Date.now() - 3_600_000)),
      });
      const tbs = randomBytes(200);
      await runtime.partitions.get('issuing')!.sign({
        key: { label: 'dev-intermediate' },
        mechanism: 'ecdsa-sha256',
        purpose: 'certificate',
        data: tbs,
      });
      unstored = `1a${randomBytes(15).toString('hex')}`;
      abandoned = `1b${randomBytes(15).toString('hex')}`;
      for (const [serial, digest] of [
        [unstored, createHash('sha256').update(tbs).digest()],
        [abandoned, randomBytes(32)],
      ] as const) {
        await old.reservePending({
          serial,
          issuerId: 'dev-intermediate',
          policy: 'web-server',
          requester: 'test',
          subject: 'CN=www.example.com',
          sans: [{ type: 'dns', value: 'www.example.com' }],
          notBefore: new Date(),
          notAfter: new Date(Date.now() + 86_400_000),
          tbsSha256: new Uint8Array(digest),
        });
      }
    } finally {
      await runtime.close();
    }
  }, 120_000);

  it('prints only JSON with --json, reports in a dry run what the run does, and exits 1 with what to do', () => {
    const dry = signet(['audit', 'reconcile', '--data', dataDir, '--json', '--dry-run']);
    const preview = JSON.parse(dry.stdout);
    expect(preview).toMatchObject({
      signedButNotStored: [{ serial: unstored }],
      abandonedCleaned: [abandoned],
      unstoredRevoked: [],
    });
    expect(dry.status).toBe(1);
    expect(dry.stderr).toContain('signed but never stored');
    expect(dry.stderr).toContain('--revoke-unstored');

    const run = signet(['audit', 'reconcile', '--data', dataDir, '--json']);
    expect(JSON.parse(run.stdout)).toEqual(preview);
    expect(run.status).toBe(1);

    const repair = signet(['audit', 'reconcile', '--data', dataDir, '--revoke-unstored']);
    expect(repair.stdout).toContain(`SIGNED, NEVER STORED   serial ${unstored}`);
    expect(repair.stdout).toContain('OK: every certificate signature is accounted for');
    expect(repair.stderr).toContain('revoked 1 certificate');
    expect(repair.status).toBe(0);
  }, 120_000);
});
