import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { createPrivateKey, randomUUID, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { CompactSign, exportJWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/api/app.ts';
import type { AppDeps } from '../../src/api/deps.ts';
import { createRenewal } from '../../src/ca/renew.usecase.ts';
import { initDataDir } from '../../src/cli/init.ts';
import { type Serving, serveDataDir } from '../../src/cli/serve.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { createEmptyPostgresDatabase, postgresAvailable } from '../helpers/database.ts';
import { hasTool } from '../helpers/tools.ts';
import { caller, logSink } from './helpers/harness.ts';

/**
 * Issue #32: POST /v1/certificates/{serial}/renew on the real service (a data folder made by
 * `signet init`, the partition process, PGlite with the real migrations, the shipped policies).
 * PGlite, and PostgreSQL where there is one.
 * The JWS proof goes through app.request (held to openapi.yaml); mutual TLS through curl against
 * the HTTPS listener; openssl makes the keys and CSRs and verifies what comes back.
 */
const haveTools = hasTool('openssl', ['version']) && hasTool('curl', ['--version']);
const execFileAsync = promisify(execFile);

let dir: string;
let serving: Serving;
let deps: AppDeps;
let call: ReturnType<typeof caller>;
let adminKey: string;
let rootFile: string;

const file = (name: string) => path.join(dir, name);

function openssl(args: string[]): string {
  return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A new P-256 key (file NAME.key) and its CSR (PEM) for the DNS names. */
function makeCsr(name: string, names: string[]): string {
  openssl([
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    file(`${name}.key`),
    '-subj',
    `/CN=${names[0]}`,
    '-addext',
    `subjectAltName=${names.map((n) => (/^[\d.]+$/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',')}`,
    '-out',
    file(`${name}.csr`),
  ]);
  return readFileSync(file(`${name}.csr`), 'utf8');
}

interface Issued {
  serialNumber: string;
  certificate: string;
  chain: string[];
  notAfter: string;
}

/** Issues a certificate through the API (admin key); its key is file NAME.key. */
async function issue(name: string, names: string[]): Promise<Issued> {
  const { response, body } = await call('POST', '/v1/certificates', {
    key: adminKey,
    body: { csr: makeCsr(name, names), policy: 'web-server' },
  });
  expect(response.status).toBe(201);
  writeFileSync(file(`${name}.pem`), body.certificate);
  return body;
}

async function jwsFor(keyName: string, payload: Record<string, unknown>): Promise<string> {
  const privateKey = createPrivateKey(readFileSync(file(`${keyName}.key`)));
  const { d: _d, ...jwk } = await exportJWK(privateKey);
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ alg: 'ES256', jwk })
    .sign(privateKey);
}

const claims = (serial: string, extra: Record<string, unknown> = {}) => ({
  serial,
  iat: Math.floor(Date.now() / 1000),
  jti: randomUUID(),
  ...extra,
});

/** openssl verify of a leaf against the root, with the intermediates given. */
function verify(name: string, issued: Issued): string {
  writeFileSync(file(`${name}-leaf.pem`), issued.certificate);
  writeFileSync(file(`${name}-chain.pem`), issued.chain.join(''));
  const result = spawnSync(
    'openssl',
    [
      'verify',
      '-x509_strict',
      '-purpose',
      'sslserver',
      '-CAfile',
      rootFile,
      '-untrusted',
      file(`${name}-chain.pem`),
      file(`${name}-leaf.pem`),
    ],
    { encoding: 'utf8' },
  );
  return `${result.stdout}${result.stderr}`.replace(file(`${name}-leaf.pem`), 'leaf');
}

const spki = (pem: string) =>
  Buffer.from(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' })).toString('hex');

/** curl against the HTTPS listener, presenting `client` (NAME.pem and NAME.key) when given. */
async function curl(
  target: string,
  { client, body }: { client?: string; body?: unknown } = {},
): Promise<{ status: number; body: string }> {
  const args = [
    '-sS',
    '--max-time',
    '60',
    '--cacert',
    file('server-ca.pem'),
    '-o',
    '-',
    '-w',
    '\n%{http_code}',
  ];
  args.push('-X', 'POST');
  if (client) args.push('--cert', file(`${client}.pem`), '--key', file(`${client}.key`));
  if (body !== undefined) {
    writeFileSync(file('curl-body.json'), JSON.stringify(body));
    args.push('-H', 'content-type: application/json', '--data-binary', `@${file('curl-body.json')}`);
  }
  const { stdout } = await execFileAsync('curl', [...args, `${serving.server.url}${target}`], {
    encoding: 'utf8',
  });
  const at = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(at + 1)), body: stdout.slice(0, at) };
}

const KINDS = haveTools ? ['pglite', ...(postgresAvailable() ? ['postgres'] : [])] : [];

describe.each(KINDS)('renewal authenticated by the certificate itself (%s)', (kind) => {
  let postgres: Awaited<ReturnType<typeof createEmptyPostgresDatabase>> | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-renew-'));
    const dataDir = file('data');
    if (kind === 'postgres') postgres = await createEmptyPostgresDatabase();
    const databaseUrl = postgres ? { databaseUrl: postgres.url } : {};
    const init = await initDataDir({
      dataDir,
      port: 0,
      publicUrl: 'http://127.0.0.1:8080',
      log: () => {},
      ...databaseUrl,
    });
    adminKey = readFileSync(init.adminKeyFile, 'utf8').trim();
    rootFile = init.rootCertificateFile;
    // The listener's own certificate comes from an unrelated CA: what renews is Signet's.
    openssl([
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      file('server-ca.key'),
      '-out',
      file('server-ca.pem'),
      '-subj',
      '/CN=Test Server CA',
      '-days',
      '2',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign',
    ]);
    openssl([
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      file('server.key'),
      '-out',
      file('server.csr'),
      '-subj',
      '/CN=127.0.0.1',
    ]);
    writeFileSync(file('server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    openssl([
      'x509',
      '-req',
      '-in',
      file('server.csr'),
      '-CA',
      file('server-ca.pem'),
      '-CAkey',
      file('server-ca.key'),
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      file('server.ext'),
      '-out',
      file('server.pem'),
    ]);
    process.env.SIGNET_LOG_LEVEL = 'silent';
    serving = await serveDataDir({
      dataDir,
      port: 0,
      tls: { cert: file('server.pem'), key: file('server.key') },
      ...databaseUrl,
    });
    const { runtime } = serving;
    deps = {
      clock: runtime.clock,
      logger: logSink().logger,
      ca: runtime.ca,
      renewal: runtime.renewal,
      apiKeys: runtime.repositories.apiKeys,
      idempotency: runtime.repositories.idempotency,
      certificates: runtime.repositories.certificates,
      issuers: runtime.repositories.issuers,
      policies: runtime.policies,
      audit: runtime.repositories.audit,
      readiness: { database: async () => {}, partition: async () => ({ state: 'unsealed' }) },
      ...(runtime.revocation ? { revocation: runtime.revocation } : {}),
    };
    call = caller(createApp(deps));
  }, 180_000);

  afterAll(async () => {
    await serving?.stop();
    await postgres?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  describe('by a JWS signed with the certificate key', () => {
    it('issues a new certificate for the same names and key under the same policy, which openssl verifies', async () => {
      const old = await issue('same-key', ['www.example.com', 'example.com']);
      const jws = await jwsFor('same-key', claims(old.serialNumber));
      const { response, body } = await call('POST', `/v1/certificates/${old.serialNumber}/renew`, {
        raw: jws,
        headers: { 'content-type': 'application/jose' },
      });
      expect(response.status).toBe(201);
      expect(response.headers.get('location')).toBe(`/v1/certificates/${body.serialNumber}`);
      expect(body.serialNumber).not.toBe(old.serialNumber);
      expect(body).toMatchObject({ policy: 'web-server', issuer: 'dev-intermediate' });
      const renewed = new X509Certificate(body.certificate);
      const before = new X509Certificate(old.certificate);
      expect(renewed.subjectAltName).toBe(before.subjectAltName);
      expect(renewed.subject).toBe(before.subject);
      expect(spki(body.certificate)).toBe(spki(old.certificate));
      expect(verify('same-key', body)).toContain('leaf: OK');
      // The renewal is stored under the first certificate's requester, and audited as a renewal.
      const stored = await deps.certificates.findBySerial(body.serialNumber);
      const first = await deps.certificates.findBySerial(old.serialNumber);
      expect(stored?.requester).toBe(first?.requester);
      const events = await deps.audit.list({ action: 'certificate.renew' });
      expect(events.items.some((e) => e.target === `certificate:${body.serialNumber}`)).toBe(true);
    });

    it('re-keys with the CSR inside the signed payload, keeping the names of the certificate, not the CSR', async () => {
      const old = await issue('rekey-old', ['api.example.com']);
      const csr = makeCsr('rekey-new', ['other.example.com']);
      const jws = await jwsFor('rekey-old', claims(old.serialNumber, { csr }));
      const { response, body } = await call('POST', `/v1/certificates/${old.serialNumber}/renew`, {
        body: { jws },
        headers: { accept: 'application/json' },
      });
      expect(response.status).toBe(201);
      expect(new X509Certificate(body.certificate).subjectAltName).toBe('DNS:api.example.com');
      const csrSpki = openssl(['req', '-in', file('rekey-new.csr'), '-pubkey', '-noout']);
      expect(new X509Certificate(body.certificate).publicKey.export({ type: 'spki', format: 'pem' })).toBe(
        csrSpki,
      );
      expect(spki(body.certificate)).not.toBe(spki(old.certificate));
      expect(verify('rekey', body)).toContain('leaf: OK');
    });

    it('answers the PEM chain itself when asked', async () => {
      const old = await issue('pem-chain', ['pem.example.com']);
      const jws = await jwsFor('pem-chain', claims(old.serialNumber));
      const { response, body } = await call('POST', `/v1/certificates/${old.serialNumber}/renew`, {
        raw: jws,
        headers: { 'content-type': 'application/jose', accept: 'application/pem-certificate-chain' },
      });
      expect(response.status).toBe(201);
      expect(response.headers.get('content-type')).toContain('application/pem-certificate-chain');
      expect(String(body).match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    });

    it.each([
      { name: 'a JWS signed by another key', status: 403, code: 'renew.key_mismatch' },
      { name: 'a JWS naming another certificate than the URL', status: 400, code: 'renew.serial_mismatch' },
      { name: 'an iat ten minutes old', status: 400, code: 'renew.iat_stale' },
      { name: 'a body that is not a JWS', status: 400, code: 'renew.jws_invalid' },
      { name: 'a JWS for no certificate', status: 404, code: 'renew.certificate_not_found' },
      { name: 'a JWS and a CSR beside it', status: 400, code: 'request.invalid_body' },
      { name: 'no proof at all (plain HTTP)', status: 401, code: 'renew.credential_missing' },
    ])('refuses $name with $status $code', async ({ name, status, code }) => {
      const old = await issue('refused', ['refused.example.com']);
      const target = name.includes('no certificate') ? '0a0b0c0d0e0f' : old.serialNumber;
      let options: Parameters<typeof call>[2] = {};
      if (name.includes('another key')) {
        makeCsr('stranger', ['stranger.example.com']);
        options = { raw: await jwsFor('stranger', claims(old.serialNumber)) };
      } else if (name.includes('another certificate')) {
        options = { raw: await jwsFor('refused', claims('0a0b0c0d0e0f')) };
      } else if (name.includes('iat')) {
        const iat = Math.floor(Date.now() / 1000) - 600;
        options = { raw: await jwsFor('refused', claims(old.serialNumber, { iat })) };
      } else if (name.includes('not a JWS')) {
        options = { raw: 'hello' };
      } else if (name.includes('no certificate')) {
        options = { raw: await jwsFor('refused', claims(target)) };
      } else if (name.includes('beside')) {
        options = {
          body: {
            jws: await jwsFor('refused', claims(old.serialNumber)),
            csr: makeCsr('x', ['x.example.com']),
          },
        };
      }
      if (options.raw !== undefined) options.headers = { 'content-type': 'application/jose' };
      const before = (await deps.certificates.list({ limit: 1000 })).items.length;
      const { response, body } = await call('POST', `/v1/certificates/${target}/renew`, options);
      expect(response.status).toBe(status);
      expect(body.code).toBe(code);
      expect((await deps.certificates.list({ limit: 1000 })).items.length).toBe(before);
    });

    it('counts refused proofs against the address: beyond rateLimit.failedAuthPerMinute, 429 before any work', async () => {
      const limited = caller(createApp({ ...deps, options: { failedAuthPerMinute: 2 } }));
      const old = await issue('flood', ['flood.example.com']);
      makeCsr('flood-stranger', ['stranger.example.com']);
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) {
        const { response } = await limited('POST', `/v1/certificates/${old.serialNumber}/renew`, {
          raw: await jwsFor('flood-stranger', claims(old.serialNumber)),
          headers: { 'content-type': 'application/jose' },
          address: '192.0.2.99',
        });
        statuses.push(response.status);
      }
      expect(statuses).toEqual([403, 403, 429]);
      // Its own key still renews from another address.
      const { response } = await limited('POST', `/v1/certificates/${old.serialNumber}/renew`, {
        raw: await jwsFor('flood', claims(old.serialNumber)),
        headers: { 'content-type': 'application/jose' },
        address: '192.0.2.100',
      });
      expect(response.status).toBe(201);
    });

    it('refuses a replayed jti with 409 renew.jti_replayed', async () => {
      const old = await issue('replay', ['replay.example.com']);
      const jws = await jwsFor('replay', claims(old.serialNumber));
      const headers = { 'content-type': 'application/jose' };
      const first = await call('POST', `/v1/certificates/${old.serialNumber}/renew`, { raw: jws, headers });
      expect(first.response.status).toBe(201);
      const again = await call('POST', `/v1/certificates/${old.serialNumber}/renew`, { raw: jws, headers });
      expect(again.response.status).toBe(409);
      expect(again.body.code).toBe('renew.jti_replayed');
    });

    it('refuses a revoked certificate with 403 renew.certificate_revoked', async () => {
      const old = await issue('revoked', ['revoked.example.com']);
      const revoked = await call('POST', `/v1/certificates/${old.serialNumber}/revoke`, {
        key: adminKey,
        body: { reason: 'superseded' },
      });
      expect(revoked.response.status).toBe(200);
      const { response, body } = await call('POST', `/v1/certificates/${old.serialNumber}/renew`, {
        raw: await jwsFor('revoked', claims(old.serialNumber)),
        headers: { 'content-type': 'application/jose' },
      });
      expect(response.status).toBe(403);
      expect(body.code).toBe('renew.certificate_revoked');
    });

    it('refuses a certificate expired longer than the grace ago, and renews one within it', async () => {
      const old = await issue('expired', ['expired.example.com']);
      const notAfter = new Date(old.notAfter).getTime();
      // The CA's clock two days past notAfter; the renewal use case on the real CA and database.
      const later = fixedClock(new Date(notAfter + 2 * 86_400_000));
      const renewalWith = (graceMs: number) =>
        createRenewal({
          ca: serving.runtime.ca,
          certificates: serving.runtime.repositories.certificates,
          issuers: serving.runtime.issuers,
          consumeJti: (entry) => serving.runtime.repositories.replayGuard.claim(entry),
          clock: later,
          graceMs,
        });
      const at = Math.floor(later.now().getTime() / 1000);
      await expect(
        renewalWith(86_400_000).withJws(
          old.serialNumber,
          await jwsFor('expired', claims(old.serialNumber, { iat: at })),
        ),
      ).rejects.toMatchObject({ code: 'renew.certificate_expired', category: 'forbidden' });
      const renewed = await renewalWith(3 * 86_400_000).withJws(
        old.serialNumber,
        await jwsFor('expired', claims(old.serialNumber, { iat: at })),
      );
      expect(renewed.renewed).toBe(old.serialNumber);
      expect(renewed.issued.serialNumber).not.toBe(old.serialNumber);
    });

    it('re-checks the policy as it is now: a name the policy no longer allows is refused', async () => {
      const old = await issue('policy-now', ['legacy.example.com']);
      const policyFile = path.join(serving.runtime.dataDir, 'policies', 'web-server.yaml');
      const original = readFileSync(policyFile, 'utf8');
      try {
        writeFileSync(
          policyFile,
          original.replace(
            'deny: [internal.example.com]',
            'deny: [internal.example.com, legacy.example.com]',
          ),
        );
        expect((await serving.runtime.policies.reload()).ok).toBe(true);
        const { response, body } = await call('POST', `/v1/certificates/${old.serialNumber}/renew`, {
          raw: await jwsFor('policy-now', claims(old.serialNumber)),
          headers: { 'content-type': 'application/jose' },
        });
        expect(response.status).toBe(403);
        expect(body.code).toBe('policy.refused');
        expect(body.violations.map((v: { code: string }) => v.code)).toContain('policy.san_denied');
      } finally {
        writeFileSync(policyFile, original);
        await serving.runtime.policies.reload();
      }
    });
  });

  describe('GET /v1/certificates?san=', () => {
    it('lists the certificates naming a SAN, by type or any, old and renewed alike', async () => {
      const old = await issue('by-san', ['listed.example.com', '192.0.2.77']);
      const jws = await jwsFor('by-san', claims(old.serialNumber));
      const renewed = await call('POST', `/v1/certificates/${old.serialNumber}/renew`, {
        raw: jws,
        headers: { 'content-type': 'application/jose' },
      });
      expect(renewed.response.status).toBe(201);
      await issue('not-listed', ['unlisted.example.com']);
      for (const san of [
        'listed.example.com',
        'LISTED.example.com',
        'dns:listed.example.com',
        'ip:192.0.2.77',
      ]) {
        const { response, body } = await call('GET', `/v1/certificates?san=${encodeURIComponent(san)}`, {
          key: adminKey,
        });
        expect(response.status, san).toBe(200);
        expect(body.items.map((c: { serialNumber: string }) => c.serialNumber).sort(), san).toEqual(
          [old.serialNumber, renewed.body.serialNumber].sort(),
        );
      }
      const none = await call('GET', `/v1/certificates?san=${encodeURIComponent('ip:listed.example.com')}`, {
        key: adminKey,
      });
      expect(none.response.status).toBe(400);
      expect(none.body.code).toBe('request.invalid_query');
      // Whole names only: a suffix of a name is not the name.
      const other = await call('GET', '/v1/certificates?san=isted.example.com', { key: adminKey });
      expect(other.body.items).toEqual([]);
    });
  });

  describe('by mutual TLS with the current certificate', () => {
    it('renews a serverAuth-only certificate presented as the TLS client certificate', async () => {
      const old = await issue('mtls', ['mtls.example.com']);
      expect(new X509Certificate(old.certificate).keyUsage ?? []).not.toContain('1.3.6.1.5.5.7.3.2');
      const { status, body } = await curl(`/v1/certificates/${old.serialNumber}/renew`, { client: 'mtls' });
      expect(status).toBe(201);
      const renewed = JSON.parse(body);
      expect(new X509Certificate(renewed.certificate).subjectAltName).toBe('DNS:mtls.example.com');
      expect(spki(renewed.certificate)).toBe(spki(old.certificate));
      expect(verify('mtls', renewed)).toContain('leaf: OK');
    });

    it('re-keys with a CSR in the JSON body', async () => {
      const old = await issue('mtls-rekey', ['rekey.example.com']);
      const csr = makeCsr('mtls-rekey-new', ['rekey.example.com']);
      const { status, body } = await curl(`/v1/certificates/${old.serialNumber}/renew`, {
        client: 'mtls-rekey',
        body: { csr },
      });
      expect(status).toBe(201);
      const renewed = JSON.parse(body);
      expect(new X509Certificate(renewed.certificate).publicKey.export({ type: 'spki', format: 'pem' })).toBe(
        openssl(['req', '-in', file('mtls-rekey-new.csr'), '-pubkey', '-noout']),
      );
    });

    it('refuses another certificate than the one in the URL, and no certificate at all', async () => {
      const mine = await issue('mtls-mine', ['mine.example.com']);
      await issue('mtls-other', ['other.example.com']);
      const other = await curl(`/v1/certificates/${mine.serialNumber}/renew`, { client: 'mtls-other' });
      expect(other.status).toBe(403);
      expect(JSON.parse(other.body).code).toBe('renew.client_certificate_invalid');
      const none = await curl(`/v1/certificates/${mine.serialNumber}/renew`);
      expect(none.status).toBe(401);
      expect(JSON.parse(none.body).code).toBe('renew.credential_missing');
    });

    it('refuses a certificate from another CA with the same serial and names', async () => {
      const mine = await issue('mtls-real', ['forged.example.com']);
      // A look-alike: the same subject, names and serial, signed by the listener's CA instead.
      writeFileSync(file('forged.ext'), 'subjectAltName=DNS:forged.example.com\n');
      openssl([
        'x509',
        '-req',
        '-in',
        file('mtls-real.csr'),
        '-CA',
        file('server-ca.pem'),
        '-CAkey',
        file('server-ca.key'),
        '-set_serial',
        `0x${mine.serialNumber}`,
        '-days',
        '1',
        '-extfile',
        file('forged.ext'),
        '-out',
        file('forged.pem'),
      ]);
      writeFileSync(file('forged.key'), readFileSync(file('mtls-real.key')));
      const { status, body } = await curl(`/v1/certificates/${mine.serialNumber}/renew`, {
        client: 'forged',
      });
      expect(status).toBe(403);
      expect(JSON.parse(body).code).toBe('renew.client_certificate_invalid');
    });
  });
});
