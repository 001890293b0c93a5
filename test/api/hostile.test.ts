import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppOptions } from '../../src/api/deps.ts';
import { createFailedAuthAudit } from '../../src/api/failed-auth.ts';
import { createApiKeysRepository } from '../../src/db/api-keys.repository.ts';
import { createAuditRepository } from '../../src/db/audit.repository.ts';
import { createCertificatesRepository } from '../../src/db/certificates.repository.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { fakeDer, reservation, seedIssuer } from '../db/builders.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { scriptedCa } from './helpers/fakes.ts';
import { buildHarness, type Harness } from './helpers/harness.ts';

// Issue #19: what a hostile client found against a running CA, each case through the real app
// (app.request) over a real database. The listening server's part is in server-limits.test.ts.

let database: TestDatabase;
let h: Harness;

beforeAll(async () => {
  database = await createTestDatabase('pglite');
});
afterAll(async () => {
  await database?.destroy();
});

async function build(options: AppOptions = {}) {
  await database.reset();
  h = await buildHarness({ database, ca: scriptedCa(), options, revocation: true });
}

const auditRows = async () => (await h.deps.audit.list({ limit: 1000 })).items;
const BAD_KEY = `sgk_0123456789abcdef_${'A'.repeat(43)}`;

describe('characters a field cannot hold', () => {
  it.each([
    {
      name: 'a NUL in an API key description',
      method: 'POST',
      path: '/v1/apikeys',
      body: { roles: ['auditor'], description: 'a\u0000b' },
      code: 'request.invalid',
      field: 'description',
    },
    {
      name: 'an unpaired surrogate in an API key description',
      method: 'POST',
      path: '/v1/apikeys',
      body: { roles: ['auditor'], description: 'a\ud800b' },
      code: 'request.invalid',
      field: 'description',
    },
    {
      name: 'a NUL in the audit actor',
      method: 'GET',
      path: '/v1/audit?actor=%00',
      code: 'request.invalid',
      field: 'actor',
    },
    {
      name: 'a NUL in the audit target',
      method: 'GET',
      path: '/v1/audit?target=%00',
      code: 'request.invalid',
      field: 'target',
    },
    {
      name: 'a NUL in the audit action',
      method: 'GET',
      path: '/v1/audit?action=%00',
      code: 'request.invalid',
      field: 'action',
    },
    {
      name: 'a NUL in the certificate issuer filter',
      method: 'GET',
      path: '/v1/certificates?issuer=%00',
      code: 'request.invalid',
      field: 'issuer',
    },
    {
      name: 'a NUL in a revocation reason',
      method: 'POST',
      path: '/v1/certificates/01/revoke',
      body: { reason: 'key\u0000Compromise' },
      code: 'request.invalid',
      field: 'reason',
    },
  ])('refuses $name with 400 $code naming the field', async ({ method, path, body, code, field }) => {
    await build();
    const { response, body: problem } = await h.call(method, path, {
      key: h.keys.admin,
      ...(body ? { body } : {}),
    });
    expect(response.status).toBe(400);
    expect(problem.code).toBe(code);
    expect(problem.errors).toContainEqual({
      path: field,
      message: 'must not contain NUL (U+0000) or unpaired surrogate characters',
    });
    expect(h.logs.lines.filter((line) => line.level === 'error')).toEqual([]);
  });

  it('stores no API key for a refused description', async () => {
    await build();
    const before = (await h.call('GET', '/v1/apikeys', { key: h.keys.admin })).body.items.length;
    await h.call('POST', '/v1/apikeys', {
      key: h.keys.admin,
      body: { roles: ['auditor'], description: 'a\u0000b' },
    });
    expect((await h.call('GET', '/v1/apikeys', { key: h.keys.admin })).body.items).toHaveLength(before);
  });

  it.each(['/v1/issuers/%00', '/v1/issuers/%00/certificate', '/v1/issuers/%00/chain'])(
    'answers an issuer id with a NUL (%s) as an unknown issuer, 404',
    async (path) => {
      await build();
      const { response, body } = await h.call('GET', path, { key: h.keys.admin });
      expect(response.status).toBe(404);
      expect(body.code).toBe('issuer.not_found');
    },
  );
});

describe('repeated query parameters', () => {
  it.each([
    { path: '/v1/certificates?policy=a&policy=b', field: 'policy' },
    { path: '/v1/certificates?limit=5&limit=500', field: 'limit' },
    { path: '/v1/audit?actor=anonymous&actor=apikey:0123456789abcdef', field: 'actor' },
  ])('refuses $path with 400 request.invalid_query naming $field', async ({ path, field }) => {
    await build();
    const { response, body } = await h.call('GET', path, { key: h.keys.admin });
    expect(response.status).toBe(400);
    expect(body.code).toBe('request.invalid_query');
    expect(body.errors).toContainEqual({ path: field, message: 'given more than once; it takes one value' });
  });

  it('refuses a repeated policy of a raw PKCS#10 issuance', async () => {
    await build();
    const { response, body } = await h.call('POST', '/v1/certificates?policy=web&policy=refuse', {
      key: h.keys.issuer,
      raw: '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n',
      headers: { 'content-type': 'application/pkcs10' },
    });
    expect(response.status).toBe(400);
    expect(body.code).toBe('request.invalid_query');
  });

  it('still reads each parameter given once', async () => {
    await build();
    const { response } = await h.call('GET', '/v1/certificates?policy=web-server&limit=5', {
      key: h.keys.admin,
    });
    expect(response.status).toBe(200);
  });
});

describe('invalidity dates', () => {
  async function issued(): Promise<string> {
    const certificates = createCertificatesRepository({ db: database.db, clock: h.clock });
    await seedIssuer(database.db);
    const row = reservation();
    await certificates.reservePending(row);
    await certificates.markIssued(row.serial, fakeDer(row.serial));
    return row.serial;
  }

  it.each(['0001-01-01T00:00:00Z', '0099-12-31T23:59:59Z', '1949-12-31T23:59:59Z'])(
    'refuses %s with 400 revocation.invalidity_date_invalid and revokes nothing',
    async (date) => {
      await build();
      const serial = await issued();
      const { response, body } = await h.call('POST', `/v1/certificates/${serial}/revoke`, {
        key: h.keys.revoker,
        body: { reason: 'keyCompromise', invalidityDate: date },
      });
      expect(response.status).toBe(400);
      expect(body.code).toBe('revocation.invalidity_date_invalid');
      const read = await h.call('GET', `/v1/certificates/${serial}`, { key: h.keys.revoker });
      expect(read.body.status).toBe('valid');
    },
  );

  it('stores 1950-01-01T00:00:00Z as sent and reads it back unchanged', async () => {
    await build();
    const serial = await issued();
    const { response, body } = await h.call('POST', `/v1/certificates/${serial}/revoke`, {
      key: h.keys.revoker,
      body: { reason: 'keyCompromise', invalidityDate: '1950-01-01T00:00:00Z' },
    });
    expect(response.status).toBe(200);
    expect(body.invalidityDate).toBe('1950-01-01T00:00:00.000Z');
    const read = await h.call('GET', `/v1/certificates/${serial}`, { key: h.keys.revoker });
    expect(read.body.invalidityDate).toBe('1950-01-01T00:00:00.000Z');
  });
});

describe('failed authentication per client address', () => {
  it('answers 429 with Retry-After once an address fails 60 times in a minute, before looking at its credential', async () => {
    await build();
    for (let i = 0; i < 60; i++) {
      const { response } = await h.call('GET', '/v1/policies', { key: BAD_KEY, address: '192.0.2.7' });
      expect(response.status).toBe(401);
    }
    const limited = await h.call('GET', '/v1/policies', { key: BAD_KEY, address: '192.0.2.7' });
    expect(limited.response.status).toBe(429);
    expect(limited.body.code).toBe('request.rate_limited');
    expect(limited.response.headers.get('retry-after')).toBe('1');
    // The address is refused whatever it sends until the budget refills; others are not.
    const valid = await h.call('GET', '/v1/policies', { key: h.keys.auditor, address: '192.0.2.7' });
    expect(valid.response.status).toBe(429);
    const other = await h.call('GET', '/v1/policies', { key: h.keys.auditor, address: '192.0.2.8' });
    expect(other.response.status).toBe(200);
    h.clock.advance(1_000);
    const refilled = await h.call('GET', '/v1/policies', { key: h.keys.auditor, address: '192.0.2.7' });
    expect(refilled.response.status).toBe(200);
  });

  it('takes the budget from rateLimit.failedAuthPerMinute and counts missing and expired credentials too', async () => {
    await build({ failedAuthPerMinute: 3 });
    const expired = await h.makeKey(['auditor'], [], new Date(h.clock.now().getTime() - 1000));
    expect((await h.call('GET', '/v1/policies', { address: '192.0.2.9' })).response.status).toBe(401);
    expect(
      (await h.call('GET', '/v1/policies', { key: expired, address: '192.0.2.9' })).response.status,
    ).toBe(403);
    expect(
      (await h.call('GET', '/v1/policies', { key: BAD_KEY, address: '192.0.2.9' })).response.status,
    ).toBe(401);
    const limited = await h.call('GET', '/v1/policies', { key: BAD_KEY, address: '192.0.2.9' });
    expect(limited.response.status).toBe(429);
    expect(limited.response.headers.get('retry-after')).toBe('20');
  });

  it('counts an IPv6 /64 as one client, and an IPv4-mapped address as its IPv4 address', async () => {
    await build({ failedAuthPerMinute: 2 });
    await h.call('GET', '/v1/policies', { key: BAD_KEY, address: '2001:db8:1:2::10' });
    await h.call('GET', '/v1/policies', { key: BAD_KEY, address: '2001:db8:1:2:ffff::99' });
    expect(
      (await h.call('GET', '/v1/policies', { key: BAD_KEY, address: '2001:db8:1:2::1' })).response.status,
    ).toBe(429);
    expect(
      (await h.call('GET', '/v1/policies', { key: BAD_KEY, address: '2001:db8:1:3::1' })).response.status,
    ).toBe(401);
    await h.call('GET', '/v1/policies', { key: BAD_KEY, address: '::ffff:192.0.2.20' });
    await h.call('GET', '/v1/policies', { key: BAD_KEY, address: '192.0.2.20' });
    expect(
      (await h.call('GET', '/v1/policies', { key: BAD_KEY, address: '::ffff:192.0.2.20' })).response.status,
    ).toBe(429);
  });

  it('bounds a flood: 300 bad credentials from one address get 240 × 429 and leave one audit row', async () => {
    // Observed before issue #19: 2,648 × 401 in 20 s, 0 × 429, +2,748 audit rows.
    await build();
    const statuses = new Map<number, number>();
    for (let i = 0; i < 300; i++) {
      const { response } = await h.call('GET', '/v1/certificates', { key: BAD_KEY, address: '198.51.100.4' });
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
    }
    expect(Object.fromEntries(statuses)).toEqual({ 401: 60, 429: 240 });
    expect(await auditRows()).toEqual([
      expect.objectContaining({
        actor: 'anonymous',
        action: 'certificate.list',
        decision: 'denied',
        details: expect.objectContaining({
          code: 'auth.credential_invalid',
          client: '198.51.100.4',
          count: 1,
        }),
      }),
    ]);
  });

  it('writes one row per address and audit interval, carrying the count of the failures it stands for', async () => {
    await build({ failedAuthPerMinute: 10_000, failedAuthIntervalMs: 60_000 });
    const started = h.clock.now().toISOString();
    for (let i = 0; i < 50; i++) {
      await h.call('GET', i % 2 ? '/v1/policies' : '/v1/audit', {
        ...(i % 5 ? { key: BAD_KEY } : {}),
        address: '192.0.2.30',
      });
      h.clock.advance(1000);
    }
    await h.call('GET', '/v1/policies', { key: BAD_KEY, address: '192.0.2.31' });
    expect((await auditRows()).map((row) => [row.details.client, row.details.count])).toEqual([
      ['192.0.2.31', 1],
      ['192.0.2.30', 1],
    ]);

    // A minute after its last row, the address's next failure writes the 49 counted since with it.
    h.clock.set(new Date(Date.parse(started) + 60_000));
    await h.call('GET', '/v1/policies', { key: BAD_KEY, address: '192.0.2.30' });
    const rows = await auditRows();
    expect(rows).toHaveLength(3);
    expect(rows[0]).toMatchObject({
      actor: 'anonymous',
      decision: 'denied',
      action: 'policy.list',
      details: {
        client: '192.0.2.30',
        count: 50,
        firstAt: new Date(Date.parse(started) + 1000).toISOString(),
        lastAt: new Date(Date.parse(started) + 60_000).toISOString(),
        codes: { 'auth.credential_invalid': 41, 'auth.credential_missing': 9 },
        actions: { 'policy.list': 26, 'audit.list': 24 },
      },
    });
  });

  it('writes the counts of an address that went quiet once another fails after the interval', async () => {
    await build({ failedAuthPerMinute: 10_000 });
    for (let i = 0; i < 5; i++) await h.call('GET', '/v1/policies', { key: BAD_KEY, address: '192.0.2.40' });
    expect(await auditRows()).toHaveLength(1);
    h.clock.advance(61_000);
    await h.call('GET', '/v1/policies', { key: BAD_KEY, address: '192.0.2.41' });
    const rows = await auditRows();
    expect(rows.map((row) => [row.details.client, row.details.count]).sort()).toEqual([
      ['192.0.2.40', 1],
      ['192.0.2.40', 4],
      ['192.0.2.41', 1],
    ]);
    // Within 192.0.2.41's interval its next failure is only counted.
    await h.call('GET', '/v1/policies', { key: BAD_KEY, address: '192.0.2.41' });
    expect(await auditRows()).toHaveLength(3);
  });

  it('writes every count not yet written at flush (signet serve flushes when it stops)', async () => {
    await database.reset();
    const clock = fixedClock('2026-03-01T12:00:00Z');
    const audit = createAuditRepository({ db: database.db, clock, nodeId: 'test-node' });
    const failedAuth = createFailedAuthAudit({ audit, clock });
    h = await buildHarness({ database, ca: scriptedCa(), clock, overrides: { failedAuth } });
    for (let i = 0; i < 7; i++) await h.call('GET', '/v1/policies', { key: BAD_KEY, address: '192.0.2.50' });
    expect((await auditRows()).map((row) => row.details.count)).toEqual([1]);
    await failedAuth.flush();
    expect((await auditRows()).map((row) => row.details.count)).toEqual([6, 1]);
    await failedAuth.flush();
    expect(await auditRows()).toHaveLength(2);
  });

  it('limits refused revocations by key possession per address, like failed authentication', async () => {
    await build({ failedAuthPerMinute: 5 });
    for (let i = 0; i < 5; i++) {
      const { response, body } = await h.call('POST', '/v1/revocations/by-key', {
        raw: 'not.a.jws',
        headers: { 'content-type': 'application/jose' },
        address: '203.0.113.5',
      });
      expect(response.status).toBe(400);
      expect(body.code).toBe('revocation.jws_invalid');
    }
    const limited = await h.call('POST', '/v1/revocations/by-key', {
      raw: 'not.a.jws',
      headers: { 'content-type': 'application/jose' },
      address: '203.0.113.5',
    });
    expect(limited.response.status).toBe(429);
    expect(limited.response.headers.get('retry-after')).toBe('12');
    expect(await auditRows()).toEqual([
      expect.objectContaining({
        action: 'certificate.revoke_by_key',
        decision: 'denied',
        details: expect.objectContaining({ code: 'revocation.jws_invalid', client: '203.0.113.5', count: 1 }),
      }),
    ]);
  });
});

describe('time limits in the app', () => {
  it('answers a body still arriving when the request timeout runs out with 408 request.body_timeout', async () => {
    await build({ requestTimeoutMs: 100 });
    let cancelled = false;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        // Part of a JSON body, and then nothing more: the client stalls.
        controller.enqueue(new TextEncoder().encode('{"roles": ["aud'));
      },
      cancel() {
        cancelled = true;
      },
    });
    const response = await h.app.request('/v1/apikeys', {
      method: 'POST',
      body,
      duplex: 'half',
      headers: { authorization: `Bearer ${h.keys.admin}`, 'content-type': 'application/json' },
    } as RequestInit);
    expect(response.status).toBe(408);
    expect(response.headers.get('connection')).toBe('close');
    expect(await response.json()).toMatchObject({ code: 'request.body_timeout', status: 408 });
    // The rest of the body is no longer waited for.
    expect(cancelled).toBe(true);
  });

  it('keeps 503 request.timeout for a handler that is slow after its body arrived', async () => {
    await build({ requestTimeoutMs: 100 });
    const ca = h.deps.ca as ReturnType<typeof scriptedCa>;
    ca.gate = new Promise(() => {});
    const { response, body } = await h.call('POST', '/v1/certificates', {
      key: h.keys.issuer,
      body: {
        csr: '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n',
        policy: 'web-server',
      },
    });
    expect(response.status).toBe(503);
    expect(body.code).toBe('request.timeout');
  });
});

describe('error logs', () => {
  it('log a failed statement with its text and error, never its parameters (a new API key hash)', async () => {
    await database.reset();
    let hash: Uint8Array | undefined;
    let poison = false;
    const real = createApiKeysRepository({ db: database.db, clock: h.clock });
    // A repository that forwards a NUL past the edge's validation: the database refuses the insert.
    h = await buildHarness({
      database,
      ca: scriptedCa(),
      overrides: {
        apiKeys: {
          ...real,
          create: (input) => {
            if (!poison) return real.create(input);
            hash = input.secretSha256;
            return real.create({ ...input, description: 'sneaky\u0000description' });
          },
        },
      },
    });
    poison = true;
    const admin = h.keys.admin;
    const { response } = await h.call('POST', '/v1/apikeys', { key: admin, body: { roles: ['auditor'] } });
    expect(response.status).toBe(500);
    const logged = h.logs.raw.filter((line) => line.includes('"internal error"'));
    expect(logged).toHaveLength(1);
    const line = JSON.parse(logged[0]!);
    expect(line.err.message).toMatch(/^Failed query: insert into "api_keys"/);
    expect(line.err.message).toMatch(/: invalid byte sequence for encoding/);
    expect(line.err.query).toMatch(/^insert into "api_keys"/);
    expect(line.err).not.toHaveProperty('params');
    const text = logged[0]!;
    expect(hash).toBeDefined();
    expect(text).not.toContain(Buffer.from(hash!).toString('hex'));
    expect(text).not.toContain(Array.from(hash!).join(','));
    expect(text).not.toContain('sneaky');
    expect(text).not.toContain('params:');
  });
});
