import { execFile, spawn, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initDataDir } from '../../src/cli/init.ts';
import { FIRST_BACKOFF_MS, renewDaemon } from '../../src/cli/renewer.ts';
import { type Serving, serveDataDir } from '../../src/cli/serve.ts';
import type { Clock } from '../../src/lib/clock.ts';
import { hasTool } from '../helpers/tools.ts';

/**
 * Issue #32: `signet certificate create | renew | list`, the real CLI (bin/signet.js) against a
 * real listening server on a data folder `signet init` made; openssl checks the files it writes.
 * The daemon's schedule runs in this process with a clock that the server shares, so that two
 * thirds of a 90-day lifetime pass in an instant and the CA agrees on the time.
 */
const haveOpenssl = hasTool('openssl', ['version']);
const SIGNET = path.resolve('bin/signet.js');

let dir: string;
let dataDir: string;
let serving: Serving;
let rootFile: string;
/** The server's clock: real time plus an offset the daemon test moves. */
let offset = 0;
const clock: Clock = { now: () => new Date(Date.now() + offset) };

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** The real CLI, asynchronously: the server it talks to runs in this process. */
function signet(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [SIGNET, ...args],
      { encoding: 'utf8', timeout: 120_000, env: { ...process.env, SIGNET_RUN_SOURCES: '1', ...env } },
      (error, stdout, stderr) =>
        resolve({ status: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const file = (...parts: string[]) => path.join(dir, ...parts);
const modeOf = (name: string) => statSync(name).mode & 0o777;
const common = () => ['--data', dataDir, '--url', serving.server.url];

function openssl(args: string[]): { status: number | null; out: string } {
  const result = spawnSync('openssl', args, { encoding: 'utf8' });
  return { status: result.status, out: `${result.stdout}${result.stderr}` };
}

/** openssl verify of NAME.pem with the intermediates of NAME.chain.pem, up to the dev root. */
function verifyFiles(folder: string, stem: string, at?: number): string {
  return openssl([
    'verify',
    '-x509_strict',
    ...(at === undefined ? [] : ['-attime', String(Math.floor(at / 1000))]),
    '-CAfile',
    rootFile,
    '-untrusted',
    path.join(folder, `${stem}.chain.pem`),
    path.join(folder, `${stem}.pem`),
  ]).out;
}

/** The key file's public key and the certificate's, as openssl prints them. */
function publicKeys(folder: string, stem: string): [string, string] {
  return [
    openssl(['pkey', '-in', path.join(folder, `${stem}.key`), '-pubout']).out,
    openssl(['x509', '-in', path.join(folder, `${stem}.pem`), '-noout', '-pubkey']).out,
  ];
}

const serialOf = (pemFile: string) => new X509Certificate(readFileSync(pemFile)).serialNumber.toLowerCase();

describe.skipIf(!haveOpenssl)('signet certificate', () => {
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-certificate-cli-'));
    dataDir = file('data');
    const init = await initDataDir({ dataDir, port: 0, publicUrl: 'http://127.0.0.1:8080', log: () => {} });
    rootFile = init.rootCertificateFile;
    process.env.SIGNET_LOG_LEVEL = 'silent';
    serving = await serveDataDir({ dataDir, port: 0, clock });
  }, 180_000);

  afterAll(async () => {
    await serving?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  describe('create', () => {
    it.each(['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'ed25519'])(
      'makes a %s key here and writes the key (0600), the certificate and the chain, which openssl verifies',
      async (keyType) => {
        const out = file(`out-${keyType}`);
        const run = await signet([
          'certificate',
          'create',
          'www.example.com',
          'example.com',
          '192.0.2.20',
          '--policy',
          'web-server',
          '--key-type',
          keyType,
          '--out',
          out,
          ...common(),
        ]);
        expect(run.stderr).toContain('issued');
        expect(run.status).toBe(0);
        expect(readdirSync(out).sort()).toEqual([
          'www.example.com.chain.pem',
          'www.example.com.key',
          'www.example.com.pem',
        ]);
        expect(modeOf(path.join(out, 'www.example.com.key'))).toBe(0o600);
        expect(verifyFiles(out, 'www.example.com')).toContain(': OK');
        const [keyPublic, certificatePublic] = publicKeys(out, 'www.example.com');
        expect(keyPublic).toContain('BEGIN PUBLIC KEY');
        expect(keyPublic).toBe(certificatePublic);
        const certificate = new X509Certificate(readFileSync(path.join(out, 'www.example.com.pem')));
        expect(certificate.subjectAltName).toBe(
          'DNS:www.example.com, DNS:example.com, IP Address:192.0.2.20',
        );
        expect(run.stdout.trim()).toBe(certificate.serialNumber.toLowerCase().replace(/^(?=[89a-f])/, '00'));
        // The chain file is the leaf, then the intermediates (never the root).
        const chain = readFileSync(path.join(out, 'www.example.com.chain.pem'), 'utf8');
        expect(chain.startsWith(readFileSync(path.join(out, 'www.example.com.pem'), 'utf8'))).toBe(true);
        expect(chain).not.toContain(readFileSync(rootFile, 'utf8').split('\n')[1]);
        // No temporary file is left behind, and the key went nowhere but its file.
        const key = readFileSync(path.join(out, 'www.example.com.key'), 'utf8').split('\n')[1]!;
        expect(run.stdout + run.stderr).not.toContain(key);
      },
    );

    it('refuses to overwrite without --force, and replaces all three with it', async () => {
      const out = file('out-force');
      const args = [
        'certificate',
        'create',
        'force.example.com',
        '--policy',
        'web-server',
        '--out',
        out,
        ...common(),
      ];
      expect((await signet(args)).status).toBe(0);
      const before = readFileSync(path.join(out, 'force.example.com.key'), 'utf8');
      const issuedBefore = (await serving.runtime.repositories.certificates.list({ limit: 500 })).items
        .length;
      const again = await signet(args);
      expect(again.status).toBe(1);
      expect(again.stderr).toContain('exists; refusing to overwrite it');
      expect(readFileSync(path.join(out, 'force.example.com.key'), 'utf8')).toBe(before);
      // Refused before the CA was asked: nothing was issued for nothing.
      expect((await serving.runtime.repositories.certificates.list({ limit: 500 })).items.length).toBe(
        issuedBefore,
      );
      const forced = await signet([...args, '--force']);
      expect(forced.status).toBe(0);
      expect(readFileSync(path.join(out, 'force.example.com.key'), 'utf8')).not.toBe(before);
      expect(modeOf(path.join(out, 'force.example.com.key'))).toBe(0o600);
      expect(verifyFiles(out, 'force.example.com')).toContain(': OK');
      expect(readdirSync(out).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    });

    it.each([
      {
        name: 'no NAME',
        args: ['--policy', 'web-server', '--out', 'x'],
        message: 'at least one NAME is required',
      },
      { name: 'no --policy', args: ['a.example.com', '--out', 'x'], message: '--policy NAME is required' },
      {
        name: 'no --out',
        args: ['a.example.com', '--policy', 'web-server'],
        message: '--out DIR is required',
      },
      {
        name: 'an unknown key type',
        args: ['a.example.com', '--policy', 'web-server', '--out', 'x', '--key-type', 'dsa-1024'],
        message: '--key-type dsa-1024',
      },
    ])('is a usage mistake (exit 2) with $name', async ({ args, message }) => {
      const run = await signet(['certificate', 'create', ...args, ...common()]);
      expect(run.status).toBe(2);
      expect(run.stderr).toContain(`signet certificate: ${message}`);
    });

    it('says what the policy refused, writes nothing and exits 1', async () => {
      const out = file('out-refused');
      const run = await signet([
        'certificate',
        'create',
        'www.example.org',
        '--policy',
        'web-server',
        '--out',
        out,
        ...common(),
      ]);
      expect(run.status).toBe(1);
      expect(run.stderr).toContain('policy.refused');
      expect(existsSync(path.join(out, 'www.example.org.key'))).toBe(false);
    });
  });

  describe('renew', () => {
    let out: string;
    beforeAll(async () => {
      out = file('out-renew');
      const run = await signet([
        'certificate',
        'create',
        'renew.example.com',
        '--policy',
        'web-server',
        '--out',
        out,
        ...common(),
      ]);
      expect(run.status).toBe(0);
    });
    const files = () => [
      '--cert',
      path.join(out, 'renew.example.com.pem'),
      '--key',
      path.join(out, 'renew.example.com.key'),
    ];

    it('does nothing before two thirds of the lifetime and says when it will', async () => {
      const before = readFileSync(path.join(out, 'renew.example.com.pem'), 'utf8');
      const run = await signet([
        'certificate',
        'renew',
        ...files(),
        '--exec',
        `touch ${file('not-run')}`,
        ...common(),
      ]);
      expect(run.status).toBe(0);
      expect(run.stderr).toMatch(/not due for renewal until \d{4}-/);
      expect(readFileSync(path.join(out, 'renew.example.com.pem'), 'utf8')).toBe(before);
      expect(existsSync(file('not-run'))).toBe(false);
    });

    it('renews at once with --force, without an API key, keeps the key and runs --exec after writing', async () => {
      const before = serialOf(path.join(out, 'renew.example.com.pem'));
      const key = readFileSync(path.join(out, 'renew.example.com.key'), 'utf8');
      const marker = file('reloaded');
      const run = await signet(
        [
          'certificate',
          'renew',
          ...files(),
          '--force',
          '--exec',
          `openssl x509 -in ${path.join(out, 'renew.example.com.pem')} -noout -serial > ${marker}`,
          '--url',
          serving.server.url,
        ],
        // No data folder, no API key: the certificate's key is the credential.
        { SIGNET_API_KEY: '', SIGNET_DATA: file('nowhere') },
      );
      expect(run.stderr).toContain('renewed');
      expect(run.status).toBe(0);
      const after = serialOf(path.join(out, 'renew.example.com.pem'));
      expect(after).not.toBe(before);
      // --exec ran after the new file was in place: it read the new serial.
      expect(readFileSync(marker, 'utf8').trim().toLowerCase()).toBe(`serial=${after}`);
      expect(readFileSync(path.join(out, 'renew.example.com.key'), 'utf8')).toBe(key);
      expect(modeOf(path.join(out, 'renew.example.com.key'))).toBe(0o600);
      expect(verifyFiles(out, 'renew.example.com')).toContain(': OK');
      const [keyPublic, certificatePublic] = publicKeys(out, 'renew.example.com');
      expect(keyPublic).toBe(certificatePublic);
    });

    it('exits 1 when the key is not the certificate key, and when --exec fails after a renewal', async () => {
      const other = file('out-other');
      await signet([
        'certificate',
        'create',
        'other.example.com',
        '--policy',
        'web-server',
        '--out',
        other,
        ...common(),
      ]);
      const wrong = await signet([
        'certificate',
        'renew',
        '--cert',
        path.join(out, 'renew.example.com.pem'),
        '--key',
        path.join(other, 'other.example.com.key'),
        '--force',
        ...common(),
      ]);
      expect(wrong.status).toBe(1);
      expect(wrong.stderr).toContain('is not the key of');
      const failing = await signet([
        'certificate',
        'renew',
        ...files(),
        '--force',
        '--exec',
        'exit 3',
        ...common(),
      ]);
      expect(failing.status).toBe(1);
      expect(failing.stderr).toContain('renewed, but --exec failed (3)');
    });

    it('refuses a revoked certificate with the server reason', async () => {
      const revoked = file('out-revoked');
      await signet([
        'certificate',
        'create',
        'gone.example.com',
        '--policy',
        'web-server',
        '--out',
        revoked,
        ...common(),
      ]);
      const serial = serialOf(path.join(revoked, 'gone.example.com.pem'));
      expect((await signet(['revoke', serial, '--reason', 'superseded', ...common()])).status).toBe(0);
      const run = await signet([
        'certificate',
        'renew',
        '--cert',
        path.join(revoked, 'gone.example.com.pem'),
        '--key',
        path.join(revoked, 'gone.example.com.key'),
        '--force',
        ...common(),
      ]);
      expect(run.status).toBe(1);
      expect(run.stderr).toContain('renew.certificate_revoked');
    });

    it('runs as a daemon until SIGTERM, renewing at once with --force, and exits 0', async () => {
      const before = serialOf(path.join(out, 'renew.example.com.pem'));
      const child = spawn(
        process.execPath,
        [SIGNET, 'certificate', 'renew', ...files(), '--daemon', '--force', ...common()],
        { env: { ...process.env, SIGNET_RUN_SOURCES: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (chunk) => {
        stderr += chunk;
      });
      const deadline = Date.now() + 60_000;
      while (!stderr.includes('next renewal') && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      expect(stderr).toContain('renewed');
      expect(serialOf(path.join(out, 'renew.example.com.pem'))).not.toBe(before);
      const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      expect(await exit).toBe(0);
    });
  });

  describe('list', () => {
    it('lists by SAN, status and policy, as a table and as JSON', async () => {
      const out = file('out-list');
      await signet([
        'certificate',
        'create',
        'listed.example.com',
        '--policy',
        'web-server',
        '--out',
        out,
        ...common(),
      ]);
      const serial = serialOf(path.join(out, 'listed.example.com.pem'));
      const json = await signet([
        'certificate',
        'list',
        '--san',
        'listed.example.com',
        '--json',
        ...common(),
      ]);
      expect(json.status).toBe(0);
      const items = JSON.parse(json.stdout).items as { serialNumber: string; sans: { value: string }[] }[];
      expect(items.map((c) => c.serialNumber.replace(/^00/, ''))).toEqual([serial.replace(/^00/, '')]);
      const table = await signet(['certificate', 'list', '--san', 'dns:listed.example.com', ...common()]);
      expect(table.status).toBe(0);
      const lines = table.stdout.trim().split('\n');
      expect(lines[0]).toMatch(/^SERIAL\s+STATUS\s+NOT AFTER\s+POLICY\s+ISSUER\s+NAMES$/);
      expect(lines).toHaveLength(2);
      expect(lines[1]).toContain('listed.example.com');
      expect(lines[1]).toContain('valid');
      const revoked = await signet(['certificate', 'list', '--status', 'revoked', '--json', ...common()]);
      const revokedItems = JSON.parse(revoked.stdout).items as {
        sans: { value: string }[];
        status: string;
      }[];
      expect(revokedItems.every((c) => c.status === 'revoked')).toBe(true);
      expect(revokedItems.map((c) => c.sans[0]!.value)).toContain('gone.example.com');
      const expiring = await signet([
        'certificate',
        'list',
        '--expires-before',
        '2000-01-01T00:00:00Z',
        '--policy',
        'web-server',
        '--json',
        ...common(),
      ]);
      expect(JSON.parse(expiring.stdout).items).toEqual([]);
      const bad = await signet(['certificate', 'list', '--status', 'good', ...common()]);
      expect(bad.status).toBe(2);
    });
  });

  describe('renew --daemon on a fake clock shared with the server', () => {
    it('renews at two thirds of the lifetime (plus jitter), runs --exec each time, and retries with backoff', async () => {
      const out = file('out-daemon');
      const created = await signet([
        'certificate',
        'create',
        'daemon.example.com',
        '--policy',
        'web-server',
        '--out',
        out,
        ...common(),
      ]);
      expect(created.status).toBe(0);
      const certFile = path.join(out, 'daemon.example.com.pem');
      const first = new X509Certificate(readFileSync(certFile));
      const marker = file('daemon-exec.log');
      const renewedAt: { at: number; notBefore: number; notAfter: number }[] = [];
      const sleeps: number[] = [];
      const stop = new AbortController();
      let failuresLeft = 2;
      const log: string[] = [];
      try {
        await renewDaemon(
          {
            certFile,
            keyFile: path.join(out, 'daemon.example.com.key'),
            chainFile: path.join(out, 'daemon.example.com.chain.pem'),
            url: serving.server.url,
            exec: `echo renewed >> ${marker}`,
            clock,
            // Time passes for the daemon and the CA at once; nothing waits for real.
            sleep: async (ms) => {
              sleeps.push(ms);
              offset += ms;
            },
            random: () => 0.5,
            // The first two attempts of the second renewal meet a network failure.
            fetch: async (input, init) => {
              if (renewedAt.length === 1 && failuresLeft > 0) {
                failuresLeft--;
                throw new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } });
              }
              return fetch(input, init);
            },
            log: (line) => {
              log.push(line);
              if (line.startsWith('renewed')) {
                const now = clock.now().getTime();
                const certificate = new X509Certificate(readFileSync(certFile));
                renewedAt.push({
                  at: now,
                  notBefore: new Date(certificate.validFrom).getTime(),
                  notAfter: new Date(certificate.validTo).getTime(),
                });
                if (renewedAt.length === 2) stop.abort();
              }
            },
          },
          stop.signal,
        );
      } finally {
        offset = 0;
      }
      expect(renewedAt).toHaveLength(2);
      // The first renewal came at two thirds of the first certificate's lifetime, plus its jitter
      // (random 0.5 of at most an hour), never before.
      const start = new Date(first.validFrom).getTime();
      const lifetime = new Date(first.validTo).getTime() - start;
      const due = start + (lifetime * 2) / 3;
      expect(renewedAt[0]!.at).toBeGreaterThanOrEqual(due);
      expect(renewedAt[0]!.at).toBeLessThanOrEqual(due + 30 * 60_000 + 5_000);
      // The second at two thirds of the renewed certificate's lifetime, after two failed attempts
      // waited 10 s then 20 s (times 0.75, the jitter at 0.5).
      const secondDue =
        renewedAt[0]!.notBefore + ((renewedAt[0]!.notAfter - renewedAt[0]!.notBefore) * 2) / 3;
      expect(renewedAt[1]!.at).toBeGreaterThanOrEqual(secondDue);
      expect(sleeps.slice(-2)).toEqual([FIRST_BACKOFF_MS * 0.75, FIRST_BACKOFF_MS * 2 * 0.75]);
      expect(log.filter((line) => line.startsWith('renewal failed'))).toHaveLength(2);
      expect(readFileSync(marker, 'utf8')).toBe('renewed\nrenewed\n');
      // Valid from the fake clock's time of renewal, which is months ahead of the real one.
      expect(verifyFiles(out, 'daemon.example.com', renewedAt[1]!.at)).toContain(': OK');
    });
  });
});
