import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { scriptedCa } from './helpers/fakes.ts';
import { buildHarness, type Harness } from './helpers/harness.ts';

// The edge alone: real database, repositories and policies; a scripted CA stands in for issuance
// so that refusals, crashes and slow requests can be provoked on demand.
const CSR = '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n';

let database: TestDatabase;
let h: Harness;
let ca: ReturnType<typeof scriptedCa>;

beforeAll(async () => {
  database = await createTestDatabase('pglite');
});
afterAll(async () => {
  await database?.destroy();
});

async function build(
  options: { bodyLimit?: number; rateLimitPerMinute?: number; requestTimeoutMs?: number } = {},
) {
  await database.reset();
  ca = scriptedCa();
  h = await buildHarness({ database, ca, options, issuerPolicies: ['web', 'refuse', 'boom', 'unknown'] });
}

const auditEvents = async () => (await h.deps.audit.list({})).items;

describe('the HTTP edge', () => {
  beforeEach(async () => {
    await build();
  });

  it('answers every response with a request id, and echoes a safe one the client sent', async () => {
    const own = await h.call('GET', '/healthz');
    expect(own.response.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const echoed = await h.call('GET', '/healthz', { headers: { 'x-request-id': 'client-trace-0001' } });
    expect(echoed.response.headers.get('x-request-id')).toBe('client-trace-0001');
    const unsafe = await h.call('GET', '/healthz', { headers: { 'x-request-id': 'bad id\twith "quotes"' } });
    expect(unsafe.response.headers.get('x-request-id')).not.toContain('bad');
  });

  it('renders an unknown route as a 404 problem with the request id', async () => {
    const { response, body } = await h.call('GET', '/v1/nothing-here');
    expect(response.status).toBe(404);
    expect(response.headers.get('content-type')).toBe('application/problem+json');
    expect(body).toMatchObject({
      type: 'https://signet.dev/problems/request.not_found',
      code: 'request.not_found',
      status: 404,
      requestId: response.headers.get('x-request-id'),
    });
  });

  it('answers a known path asked with another method with 405 and Allow', async () => {
    const { response, body } = await h.call('PUT', '/v1/apikeys');
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('POST, GET, HEAD');
    expect(body.code).toBe('request.method_not_allowed');
  });

  describe('authentication', () => {
    it.each([
      {
        name: 'no Authorization header',
        authorization: undefined,
        status: 401,
        code: 'auth.credential_missing',
      },
      {
        name: 'a scheme other than Bearer',
        authorization: 'Basic dXNlcjpwYXNz',
        status: 401,
        code: 'auth.credential_invalid',
      },
      {
        name: 'a malformed key',
        authorization: 'Bearer not-a-key',
        status: 401,
        code: 'auth.credential_invalid',
      },
      {
        name: 'an unknown key of the right shape',
        authorization: `Bearer sgk_0123456789abcdef_${'A'.repeat(43)}`,
        status: 401,
        code: 'auth.credential_invalid',
      },
    ])(
      'refuses $name with $status $code and leaves one audit record',
      async ({ authorization, status, code }) => {
        const { response, body } = await h.call('GET', '/v1/policies', {
          headers: authorization ? { authorization } : {},
        });
        expect(response.status).toBe(status);
        expect(body.code).toBe(code);
        expect(response.headers.get('www-authenticate')).toBe('Bearer realm="signet"');
        expect(await auditEvents()).toEqual([
          expect.objectContaining({
            actor: 'anonymous',
            action: 'policy.list',
            decision: 'denied',
            details: expect.objectContaining({ code }),
          }),
        ]);
      },
    );

    it('refuses a key whose secret is wrong even when its id exists', async () => {
      const forged = `${h.keys.admin.slice(0, 21)}${'B'.repeat(43)}`;
      const { response, body } = await h.call('GET', '/v1/policies', { key: forged });
      expect(response.status).toBe(401);
      expect(body.code).toBe('auth.credential_invalid');
    });

    it('refuses an expired key with 403 auth.key_expired', async () => {
      const key = await h.makeKey(['admin'], [], new Date(h.clock.now().getTime() + 60_000));
      expect((await h.call('GET', '/v1/policies', { key })).response.status).toBe(200);
      h.clock.advance(60_000);
      const { response, body } = await h.call('GET', '/v1/policies', { key });
      expect(response.status).toBe(403);
      expect(body.code).toBe('auth.key_expired');
    });

    it('refuses a revoked key from the moment it is revoked', async () => {
      const key = await h.makeKey(['auditor']);
      const id = key.split('_')[1]!;
      expect((await h.call('GET', '/v1/policies', { key })).response.status).toBe(200);
      expect((await h.call('DELETE', `/v1/apikeys/${id}`, { key: h.keys.admin })).response.status).toBe(204);
      const { response, body } = await h.call('GET', '/v1/policies', { key });
      expect(response.status).toBe(401);
      expect(body.code).toBe('auth.credential_invalid');
    });
  });

  describe('issuance errors', () => {
    it('refuses a policy not bound to the key with 403 and an audit record, without calling the CA', async () => {
      const { response, body } = await h.call('POST', '/v1/certificates', {
        key: h.keys.issuer,
        body: { csr: CSR, policy: 'other' },
      });
      expect(response.status).toBe(403);
      expect(body.code).toBe('policy.requester_not_bound');
      expect(ca.calls).toHaveLength(0);
      expect(await auditEvents()).toEqual([
        expect.objectContaining({
          action: 'certificate.issue',
          decision: 'denied',
          target: 'policy:other',
          details: expect.objectContaining({ code: 'policy.requester_not_bound' }),
        }),
      ]);
    });

    it('passes a policy refusal through as 403 with every violation', async () => {
      const { response, body } = await h.call('POST', '/v1/certificates', {
        key: h.keys.issuer,
        body: { csr: CSR, policy: 'refuse' },
      });
      expect(response.status).toBe(403);
      expect(body.code).toBe('policy.refused');
      expect(body.violations).toEqual([expect.objectContaining({ code: 'policy.dns_not_allowed' })]);
    });

    it('answers an unknown policy with 400 policy.unknown', async () => {
      const { response, body } = await h.call('POST', '/v1/certificates', {
        key: h.keys.issuer,
        body: { csr: CSR, policy: 'unknown' },
      });
      expect(response.status).toBe(400);
      expect(body.code).toBe('policy.unknown');
    });

    it.each([
      { name: 'a body that is not JSON', code: 'request.invalid_json', raw: '{"csr": ' },
      { name: 'a missing csr', code: 'request.invalid_body', raw: JSON.stringify({ policy: 'web' }) },
      {
        name: 'an unknown field',
        code: 'request.invalid_body',
        raw: JSON.stringify({ csr: CSR, policy: 'web', admin: true }),
      },
      {
        name: 'a bad SAN type',
        code: 'request.invalid_body',
        raw: JSON.stringify({ csr: CSR, policy: 'web', sans: [{ type: 'x400', value: 'a' }] }),
      },
      {
        name: 'a validity in months',
        code: 'request.invalid_body',
        raw: JSON.stringify({ csr: CSR, policy: 'web', validity: 'P1M' }),
      },
    ])('refuses $name with 400 $code', async ({ raw, code }) => {
      const { response, body } = await h.call('POST', '/v1/certificates', {
        key: h.keys.issuer,
        raw,
        headers: { 'content-type': 'application/json' },
      });
      expect(response.status).toBe(400);
      expect(body.code).toBe(code);
      if (code === 'request.invalid_body') expect(body.errors.length).toBeGreaterThan(0);
    });

    it('refuses a body type it does not read with 415', async () => {
      const { response, body } = await h.call('POST', '/v1/certificates', {
        key: h.keys.issuer,
        raw: 'csr=abc',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      });
      expect(response.status).toBe(415);
      expect(body.code).toBe('request.unsupported_media_type');
    });

    it('answers an internal failure with a bare 500 and logs it under the same request id', async () => {
      const { response, body } = await h.call('POST', '/v1/certificates', {
        key: h.keys.issuer,
        body: { csr: CSR, policy: 'boom' },
      });
      expect(response.status).toBe(500);
      expect(body.code).toBe('internal');
      expect(JSON.stringify(body)).not.toContain('hunter2');
      const requestId = response.headers.get('x-request-id');
      const errorLine = h.logs.lines.find(
        (line) => line.reqId === requestId && line.level === 'error' && line.err,
      );
      expect(errorLine).toBeDefined();
    });
  });

  describe('limits', () => {
    it('refuses a body over the limit with 413 before authenticating', async () => {
      await build({ bodyLimit: 1024 });
      const { response, body } = await h.call('POST', '/v1/certificates', {
        key: h.keys.issuer,
        raw: JSON.stringify({ csr: 'A'.repeat(2000), policy: 'web' }),
        headers: { 'content-type': 'application/json' },
      });
      expect(response.status).toBe(413);
      expect(body.code).toBe('request.body_too_large');
    });

    it('refuses a chunked body once it grows past the limit', async () => {
      await build({ bodyLimit: 1024 });
      const stream = new ReadableStream({
        start(controller) {
          for (let i = 0; i < 4; i++) controller.enqueue(new TextEncoder().encode('x'.repeat(512)));
          controller.close();
        },
      });
      const response = await h.app.request('/v1/certificates', {
        method: 'POST',
        body: stream,
        headers: { authorization: `Bearer ${h.keys.issuer}`, 'content-type': 'application/json' },
        duplex: 'half',
      } as RequestInit);
      expect(response.status).toBe(413);
    });

    it('answers 429 with Retry-After once a credential spends its requests, and other credentials are unaffected', async () => {
      await build({ rateLimitPerMinute: 3 });
      for (let i = 0; i < 3; i++)
        expect((await h.call('GET', '/v1/policies', { key: h.keys.auditor })).response.status).toBe(200);
      const { response, body } = await h.call('GET', '/v1/policies', { key: h.keys.auditor });
      expect(response.status).toBe(429);
      expect(body.code).toBe('request.rate_limited');
      expect(response.headers.get('retry-after')).toBe('20');
      expect((await h.call('GET', '/v1/policies', { key: h.keys.admin })).response.status).toBe(200);
      h.clock.advance(20_000);
      expect((await h.call('GET', '/v1/policies', { key: h.keys.auditor })).response.status).toBe(200);
    });
  });

  it('abandons a handler that outlives the request timeout with a 503 problem', async () => {
    await build({ requestTimeoutMs: 50 });
    ca.gate = new Promise(() => {});
    const { response, body } = await h.call('POST', '/v1/certificates', {
      key: h.keys.issuer,
      body: { csr: CSR, policy: 'web' },
    });
    expect(response.status).toBe(503);
    expect(body.code).toBe('request.timeout');
    expect(response.headers.get('retry-after')).toBe('5');
  });

  describe('Idempotency-Key', () => {
    const issue = (key: string, body: unknown) =>
      h.call('POST', '/v1/certificates', { key: h.keys.issuer, body, headers: { 'idempotency-key': key } });

    it('replays the first 201 for a retry with the same body, without issuing again', async () => {
      const first = await issue('retry-1', { csr: CSR, policy: 'web' });
      const second = await issue('retry-1', { csr: CSR, policy: 'web' });
      expect(first.response.status).toBe(201);
      expect(second.response.status).toBe(201);
      expect(second.body).toEqual(first.body);
      expect(second.response.headers.get('idempotent-replayed')).toBe('true');
      expect(ca.calls).toHaveLength(1);
    });

    it('answers 422 for the same key with another body', async () => {
      await issue('retry-2', { csr: CSR, policy: 'web' });
      const { response, body } = await issue('retry-2', { csr: CSR, policy: 'web', validity: 'P1D' });
      expect(response.status).toBe(422);
      expect(body.code).toBe('idempotency.key_reused');
    });

    it('answers 409 while the first request with the key is still in flight', async () => {
      let open!: () => void;
      ca.gate = new Promise((resolve) => {
        open = resolve;
      });
      const first = issue('retry-3', { csr: CSR, policy: 'web' });
      await new Promise((resolve) => setTimeout(resolve, 20));
      const { response, body } = await issue('retry-3', { csr: CSR, policy: 'web' });
      expect(response.status).toBe(409);
      expect(body.code).toBe('idempotency.in_flight');
      open();
      expect((await first).response.status).toBe(201);
    });

    it('keeps keys apart per credential', async () => {
      const other = await h.makeKey(['issuer'], ['web']);
      await issue('shared', { csr: CSR, policy: 'web' });
      const { response } = await h.call('POST', '/v1/certificates', {
        key: other,
        body: { csr: CSR, policy: 'web', validity: 'P2D' },
        headers: { 'idempotency-key': 'shared' },
      });
      expect(response.status).toBe(201);
    });

    it('forgets a key whose request failed, so the retry runs again', async () => {
      const failed = await issue('retry-4', { csr: CSR, policy: 'refuse' });
      expect(failed.response.status).toBe(403);
      const again = await issue('retry-4', { csr: CSR, policy: 'refuse' });
      expect(again.response.status).toBe(403);
      expect(ca.calls).toHaveLength(2);
    });

    it('refuses a key that is not printable ASCII', async () => {
      const { response, body } = await issue('with space', { csr: CSR, policy: 'web' });
      expect(response.status).toBe(400);
      expect(body.code).toBe('idempotency.key_invalid');
    });
  });
});
