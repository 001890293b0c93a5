import { execFile, execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtlsResolver } from '../../src/api/auth/mtls.ts';
import { type RunningServer, startServer } from '../../src/api/server.ts';
import { createCertificatesRepository } from '../../src/db/certificates.repository.ts';
import { createIssuersRepository } from '../../src/db/issuers.repository.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { hasTool } from '../helpers/tools.ts';
import { scriptedCa } from './helpers/fakes.ts';
import { buildHarness, type Harness } from './helpers/harness.ts';

/**
 * Mutual TLS (issue #10): openssl makes a server CA, a client CA and client certificates; curl
 * presents them to a real HTTPS listener whose config maps certificates to roles.
 */
const haveTools = hasTool('openssl', ['version']) && hasTool('curl', ['--version']);
const execFileAsync = promisify(execFile);

let dir: string;
let database: TestDatabase;
let h: Harness;
let server: RunningServer;

const file = (name: string) => path.join(dir, name);

function makeCa(name: string, subject: string) {
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      file(`${name}.key`),
      '-out',
      file(`${name}.pem`),
      '-subj',
      subject,
      '-days',
      '2',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    { stdio: 'ignore' },
  );
}

function makeLeaf(name: string, ca: string, subject: string, extensions: string) {
  writeFileSync(file(`${name}.ext`), `${extensions}\n`);
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
      file(`${name}.key`),
      '-out',
      file(`${name}.csr`),
      '-subj',
      subject,
    ],
    { stdio: 'ignore' },
  );
  execFileSync(
    'openssl',
    [
      'x509',
      '-req',
      '-in',
      file(`${name}.csr`),
      '-CA',
      file(`${ca}.pem`),
      '-CAkey',
      file(`${ca}.key`),
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      file(`${name}.ext`),
      '-out',
      file(`${name}.pem`),
    ],
    { stdio: 'ignore' },
  );
}

async function curl(
  target: string,
  client?: string,
  headers: string[] = [],
): Promise<{ status: number; body: string }> {
  const args = [
    '-sS',
    '--max-time',
    '30',
    '--cacert',
    file('server-ca.pem'),
    '-o',
    '-',
    '-w',
    '\n%{http_code}',
    ...headers,
  ];
  if (client) args.push('--cert', file(`${client}.pem`), '--key', file(`${client}.key`));
  const { stdout } = await execFileAsync('curl', [...args, `${server.url}${target}`], { encoding: 'utf8' });
  const at = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(at + 1)), body: stdout.slice(0, at) };
}

describe.skipIf(!haveTools)('mutual TLS', () => {
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-mtls-'));
    makeCa('server-ca', '/CN=Test Server CA');
    makeLeaf(
      'server',
      'server-ca',
      '/CN=127.0.0.1',
      'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth',
    );
    makeCa('client-ca', '/CN=Test Client CA');
    makeCa('rogue-ca', '/CN=Test Client CA');
    const clientExt = (san: string) => `subjectAltName=${san}\nextendedKeyUsage=clientAuth`;
    makeLeaf('auditor', 'client-ca', '/O=Example Corp/CN=audit-bot', clientExt('DNS:audit-bot.example.com'));
    makeLeaf('deployer', 'client-ca', '/CN=deployer', clientExt('URI:spiffe://example.org/deploy'));
    makeLeaf('stranger', 'client-ca', '/CN=stranger', clientExt('DNS:stranger.example.com'));
    makeLeaf('rogue', 'rogue-ca', '/O=Example Corp/CN=audit-bot', clientExt('DNS:audit-bot.example.com'));

    database = await createTestDatabase('pglite');
    h = await buildHarness({
      database,
      ca: scriptedCa(),
      options: {
        tlsClients: [
          { subject: 'CN=audit-bot, O=Example Corp', roles: ['auditor'], policies: [] },
          { san: 'uri:spiffe://example.org/deploy', roles: ['issuer'], policies: ['web-server'] },
        ],
      },
    });
    server = await startServer(h.app, {
      port: 0,
      tls: {
        cert: readFileSync(file('server.pem')),
        key: readFileSync(file('server.key')),
        clientCa: readFileSync(file('client-ca.pem')),
      },
    });
  }, 120_000);

  afterAll(async () => {
    await server?.close(100);
    await database?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('maps a verified client certificate by subject to its roles', async () => {
    const { status, body } = await curl('/v1/audit', 'auditor');
    expect(status).toBe(200);
    expect(JSON.parse(body).items).toEqual(expect.any(Array));
    expect((await curl('/v1/apikeys', 'auditor')).status).toBe(403);
  });

  it('maps a client certificate by SAN, and its bound policies apply', async () => {
    expect((await curl('/v1/audit', 'deployer')).status).toBe(403);
    const refused = await curl('/v1/certificates', 'deployer', [
      '-X',
      'POST',
      '-H',
      'content-type: application/json',
      '--data',
      JSON.stringify({
        csr: '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n',
        policy: 'client-mtls',
      }),
    ]);
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body).code).toBe('policy.requester_not_bound');
    const events = (await h.deps.audit.list({ action: 'certificate.issue' })).items;
    expect(events[0]).toMatchObject({ actor: 'mtls:CN=deployer', decision: 'denied' });
  });

  it.each([
    { name: 'no client certificate', client: undefined },
    { name: 'a verified certificate that no mapping names', client: 'stranger' },
    { name: 'a certificate with a mapped subject from an untrusted CA', client: 'rogue' },
  ])('authenticates nothing with $name', async ({ client }) => {
    const { status, body } = await curl('/v1/audit', client);
    expect(status).toBe(401);
    expect(JSON.parse(body).code).toBe('auth.credential_missing');
  });

  it('still accepts API keys over the same listener', async () => {
    expect(
      (await curl('/v1/audit', undefined, ['-H', `authorization: Bearer ${h.keys.auditor}`])).status,
    ).toBe(200);
  });

  it('refuses a client certificate this CA issued once it is revoked, at once, from the database every node shares', async () => {
    // The deployer's certificate as if this CA had issued it: stored with its DER and serial.
    const x509 = new X509Certificate(readFileSync(file('deployer.pem')));
    const der = new Uint8Array(x509.raw);
    await createIssuersRepository({ db: database.db }).upsert({
      id: 'client-issuer',
      name: 'Client Issuer',
      certificateDer: new Uint8Array(new X509Certificate(readFileSync(file('client-ca.pem'))).raw),
      keyUri: 'hsm:partition=issuing;label=client-issuer',
    });
    const certificates = createCertificatesRepository({ db: database.db });
    const serial = x509.serialNumber.toLowerCase();
    await certificates.reservePending({
      serial,
      issuerId: 'client-issuer',
      policy: 'client-mtls',
      requester: 'k_test',
      subject: 'CN=deployer',
      sans: [{ type: 'uri', value: 'spiffe://example.org/deploy' }],
      notBefore: new Date(x509.validFrom),
      notAfter: new Date(x509.validTo),
      tbsSha256: new Uint8Array(createHash('sha256').update(der).digest()),
    });
    await certificates.markIssued(serial, der);
    expect((await curl('/v1/certificates?limit=1', 'deployer')).status).toBe(200);
    // Revoked by another node (straight into the shared database): the very next request fails.
    await certificates.revoke(serial, { reason: 'keyCompromise', revokedAt: new Date() });
    const refused = await curl('/v1/certificates?limit=1', 'deployer');
    expect(refused.status).toBe(401);
    expect(JSON.parse(refused.body)).toMatchObject({ code: 'auth.credential_invalid' });
    // Another client certificate is unaffected.
    expect((await curl('/v1/audit', 'auditor')).status).toBe(200);
  });

  it('refuses a mapping that names neither a subject nor a SAN when the app is built', () => {
    expect(() => createMtlsResolver([{ roles: ['admin'], policies: [] }])).toThrow(/subject or a san/);
  });
});
