import { createHash } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RevocationDeps } from '../../src/api/deps.ts';
import { createMetrics } from '../../src/api/metrics.ts';
import { createImportFor } from '../../src/cli/revocation.ts';
import { createCrlsRepository } from '../../src/db/crls.repository.ts';
import { createIssuersRepository } from '../../src/db/issuers.repository.ts';
import { buildCrl } from '../../src/revocation/crl-builder.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { createIntermediate, createRoot, type TestCa } from '../revocation/helpers/pki.ts';
import { scriptedCa } from './helpers/fakes.ts';
import { buildHarness, type Harness } from './helpers/harness.ts';

/**
 * Issue #18 at the HTTP edge: POST /v1/issuers/{id}/crl (admin, application/pkix-crl) publishes a
 * CRL signed offline, served at /crl/{id}.crl with the caching headers of the CA's own CRLs;
 * /readyz warns before it expires and /metrics exposes its nextUpdate. Real repositories on a
 * real database; every response held to openapi.yaml.
 */
const NOW = new Date('2026-03-01T12:00:00Z');
const DAY = 86_400_000;

let database: TestDatabase;
let root: TestCa;
let other: TestCa;
let intermediate: TestCa;
let h: Harness;
let crls: ReturnType<typeof createCrlsRepository>;

beforeAll(async () => {
  database = await createTestDatabase('pglite');
  const validity = {
    notBefore: new Date('2026-01-01T00:00:00Z'),
    notAfter: new Date('2036-01-01T00:00:00Z'),
  };
  root = await createRoot({ algorithm: 'ecdsa-p384', name: 'CN=Example Root R1,O=Example', ...validity });
  other = await createRoot({ algorithm: 'ecdsa-p384', name: 'CN=Example Root R1,O=Example', ...validity });
  intermediate = await createIntermediate(root, validity);
});
afterAll(async () => {
  await database?.destroy();
});

async function harness(options: Parameters<typeof buildHarness>[0]['options'] = {}) {
  await database.reset();
  const { db } = database;
  const issuers = createIssuersRepository({ db });
  crls = createCrlsRepository({ db });
  await issuers.create({
    id: 'example-root',
    name: 'Example Root R1',
    certificateDer: root.der,
    keyUri: 'hsm:partition=root;label=example-root-r1',
  });
  await issuers.create({
    id: 'example-intermediate',
    name: 'Example Intermediate',
    parentId: 'example-root',
    certificateDer: intermediate.der,
    keyUri: 'hsm:partition=issuing;label=example-intermediate',
  });
  const built = await buildHarness({
    database,
    ca: scriptedCa(),
    options,
    overrides: { metrics: createMetrics() },
  });
  const crlImport = createImportFor({
    config: { partitions: { issuing: {} as never } },
    clock: built.clock,
    issuers,
    crls,
  });
  // Only the CRL surface: issuing, revoking and OCSP are not what this file tests.
  built.deps.revocation = { crls, crlImport } as unknown as RevocationDeps;
  return built;
}

async function crlBy(
  ca: TestCa,
  {
    number = 2n,
    thisUpdate = new Date(NOW.getTime() - DAY),
    nextUpdate = new Date(NOW.getTime() + 365 * DAY),
  } = {},
) {
  return (
    await buildCrl({
      issuer: ca.der,
      signer: ca.signer,
      number,
      thisUpdate,
      nextUpdate,
      issuingDistributionPoint: { onlyContainsCACerts: true },
    })
  ).der;
}

const post = (
  der: Uint8Array,
  { key = h.keys.admin, issuer = 'example-root', type = 'application/pkix-crl' } = {},
) => h.call('POST', `/v1/issuers/${issuer}/crl`, { key, raw: der, headers: { 'content-type': type } });

describe('POST /v1/issuers/{id}/crl', () => {
  beforeEach(async () => {
    h = await harness();
  });

  it('publishes the CRL, served as it is at /crl/{id}.crl with the caching headers of the CA own CRLs', async () => {
    const der = await crlBy(root, { number: 7n });
    const { response, body } = await post(der);
    expect(response.status).toBe(200);
    const sha256 = createHash('sha256').update(der).digest('hex');
    expect(body).toEqual({
      issuer: 'example-root',
      crlNumber: '7',
      thisUpdate: new Date(NOW.getTime() - DAY).toISOString(),
      nextUpdate: new Date(NOW.getTime() + 365 * DAY).toISOString(),
      entries: 0,
      sha256,
    });
    const served = await h.call('GET', '/crl/example-root.crl');
    expect(served.response.status).toBe(200);
    expect(Buffer.from(served.body as Buffer).equals(Buffer.from(der))).toBe(true);
    expect(served.response.headers.get('content-type')).toBe('application/pkix-crl');
    expect(served.response.headers.get('etag')).toBe(`"${sha256}"`);
    expect(served.response.headers.get('cache-control')).toBe(
      `public, max-age=${365 * 86_400}, no-transform`,
    );
    expect(served.response.headers.get('expires')).toBe(new Date(NOW.getTime() + 365 * DAY).toUTCString());
    const again = await h.call('GET', '/crl/example-root.crl', {
      headers: { 'if-none-match': `"${sha256}"` },
    });
    expect(again.response.status).toBe(304);
    const audit = await h.deps.audit.list({ action: 'crl.import' });
    expect(audit.items.map((e) => [e.decision, e.target, e.details])).toEqual([
      ['allowed', 'issuer:example-root', expect.objectContaining({ crlNumber: '7' })],
    ]);
  });

  it('is for admins only', async () => {
    const der = await crlBy(root);
    expect((await h.call('POST', '/v1/issuers/example-root/crl', { raw: der })).response.status).toBe(401);
    for (const role of ['issuer', 'revoker', 'auditor'] as const) {
      const { response, body } = await post(der, { key: h.keys[role] });
      expect(response.status).toBe(403);
      expect(body.code).toBe('auth.role_forbidden');
    }
    expect(await crls.getLatestInfo('example-root', 0, 'full')).toBeNull();
  });

  it('takes DER as application/pkix-crl and nothing else', async () => {
    const { response, body } = await post(await crlBy(root), { type: 'application/octet-stream' });
    expect(response.status).toBe(415);
    expect(response.headers.get('accept-post')).toBe('application/pkix-crl');
    expect(body.code).toBe('request.unsupported_media_type');
  });

  it.each([
    {
      name: 'a body that is not a CRL',
      crl: async () => new TextEncoder().encode('hello'),
      status: 400,
      code: 'crl.malformed',
    },
    {
      name: 'a CRL with its name signed by another key',
      crl: () => crlBy(other),
      status: 400,
      code: 'crl.signature_invalid',
    },
    {
      name: 'an expired CRL',
      crl: () =>
        crlBy(root, {
          thisUpdate: new Date(NOW.getTime() - 40 * DAY),
          nextUpdate: new Date(NOW.getTime() - DAY),
        }),
      status: 422,
      code: 'crl.expired',
    },
    {
      name: 'a CRL that starts tomorrow',
      crl: () =>
        crlBy(root, {
          thisUpdate: new Date(NOW.getTime() + DAY),
          nextUpdate: new Date(NOW.getTime() + 9 * DAY),
        }),
      status: 422,
      code: 'crl.not_yet_valid',
    },
    {
      name: 'a CRL for an issuer this CA signs CRLs for',
      crl: () => crlBy(intermediate),
      issuer: 'example-intermediate',
      status: 409,
      code: 'crl.issuer_signs_online',
    },
    {
      name: 'a CRL for an unknown issuer',
      crl: () => crlBy(root),
      issuer: 'nobody',
      status: 404,
      code: 'issuer.not_found',
    },
    {
      name: 'an issuer id that is no slug',
      crl: () => crlBy(root),
      issuer: 'Not_A_Slug',
      status: 404,
      code: 'issuer.not_found',
    },
  ])('refuses $name with $status $code, audited', async ({ crl, issuer, status, code }) => {
    const { response, body } = await post(await crl(), issuer ? { issuer } : {});
    expect(response.status).toBe(status);
    expect(body.code).toBe(code);
    expect(body.type).toBe(`https://signet.dev/problems/${code}`);
    const audit = await h.deps.audit.list({ action: 'crl.import' });
    expect(audit.items.map((e) => [e.decision, e.details.code])).toEqual([['denied', code]]);
  });

  it('refuses a CRL number that is not above the one served with 409 crl.number_not_increasing', async () => {
    expect((await post(await crlBy(root, { number: 3n }))).response.status).toBe(200);
    const { response, body } = await post(await crlBy(root, { number: 3n }));
    expect(response.status).toBe(409);
    expect(body.code).toBe('crl.number_not_increasing');
    expect(body.detail).toContain('not above 3');
  });
});

describe('watching imported CRLs', () => {
  it('readyz lists no warning while the imported CRL is further than 30 days from its nextUpdate, then warns, and stays 200', async () => {
    h = await harness();
    const ready = await h.call('GET', '/readyz');
    expect(ready.body).toEqual({
      status: 'ready',
      checks: { database: 'ok', partition: 'ok' },
      warnings: [],
    });
    await post(await crlBy(root, { nextUpdate: new Date(NOW.getTime() + 40 * DAY) }));
    // A CRL the online CA signs (not imported) never warns here: its scheduler renews it.
    await crls.save({
      issuerId: 'example-intermediate',
      shard: 0,
      kind: 'full',
      crlNumber: 1n,
      thisUpdate: NOW,
      nextUpdate: new Date(NOW.getTime() + DAY),
      der: Uint8Array.of(0x30, 0x00),
      sha256: new Uint8Array(32),
      generatedAt: NOW,
    });
    expect((await h.call('GET', '/readyz')).body.warnings).toEqual([]);

    h.clock.advance(10 * DAY + 1000);
    const expiring = await h.call('GET', '/readyz');
    expect(expiring.response.status).toBe(200);
    expect(expiring.body.status).toBe('ready');
    expect(expiring.body.warnings).toEqual([
      {
        code: 'crl.imported_expiring',
        issuer: 'example-root',
        nextUpdate: new Date(NOW.getTime() + 40 * DAY).toISOString(),
        detail: expect.stringContaining('run the crl ceremony'),
      },
    ]);

    h.clock.advance(30 * DAY);
    const expired = await h.call('GET', '/readyz');
    expect(expired.response.status).toBe(200);
    expect(expired.body.warnings.map((w: { code: string }) => w.code)).toEqual(['crl.imported_expired']);
  });

  it('warns from the configured margin (crl.importedExpiryWarning)', async () => {
    h = await harness({ importedCrlExpiryWarningMs: 60 * DAY });
    await post(await crlBy(root, { nextUpdate: new Date(NOW.getTime() + 45 * DAY) }));
    expect((await h.call('GET', '/readyz')).body.warnings.map((w: { code: string }) => w.code)).toEqual([
      'crl.imported_expiring',
    ]);
  });

  it('exposes the nextUpdate of each served CRL in /metrics, labelled by source', async () => {
    h = await harness();
    await post(await crlBy(root, { nextUpdate: new Date(NOW.getTime() + 40 * DAY) }));
    await crls.save({
      issuerId: 'example-intermediate',
      shard: 0,
      kind: 'full',
      crlNumber: 1n,
      thisUpdate: NOW,
      nextUpdate: new Date(NOW.getTime() + DAY),
      der: Uint8Array.of(0x30, 0x00),
      sha256: new Uint8Array(32),
      generatedAt: NOW,
    });
    const text = ((await h.call('GET', '/metrics', { key: h.keys.auditor })).body as Buffer).toString('utf8');
    const seconds = (ms: number) => Math.floor(ms / 1000);
    expect(text).toContain(
      `signet_crl_next_update_timestamp_seconds{issuer="example-root",shard="0",kind="full",source="imported"} ${seconds(NOW.getTime() + 40 * DAY)}`,
    );
    expect(text).toContain(
      `signet_crl_next_update_timestamp_seconds{issuer="example-intermediate",shard="0",kind="full",source="online"} ${seconds(NOW.getTime() + DAY)}`,
    );
  });
});
