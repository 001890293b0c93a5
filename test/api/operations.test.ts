import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMetricsApp } from '../../src/api/metrics.routes.ts';
import { createMetrics } from '../../src/api/metrics.ts';
import { createSharedCredentialLimiter } from '../../src/api/middleware/rate-limit-shared.ts';
import { type RunningServer, startServer } from '../../src/api/server.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { readyProbe, scriptedCa } from './helpers/fakes.ts';
import { buildHarness, type Harness } from './helpers/harness.ts';

const CSR = '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n';
const CHROMIUM = '/usr/bin/chromium';

let database: TestDatabase;
let h: Harness;
const metrics = () => h.deps.metrics!;

beforeAll(async () => {
  database = await createTestDatabase('pglite');
});
afterAll(async () => {
  await database?.destroy();
});
beforeEach(async () => {
  await database.reset();
  h = await buildHarness({
    database,
    ca: scriptedCa(),
    issuerPolicies: ['web-server', 'refuse'],
    overrides: { metrics: createMetrics() },
  });
});

describe('GET /metrics', () => {
  it('is for auditors and admins only', async () => {
    expect((await h.call('GET', '/metrics')).response.status).toBe(401);
    expect((await h.call('GET', '/metrics', { key: h.keys.issuer })).response.status).toBe(403);
    expect((await h.call('GET', '/metrics', { key: h.keys.auditor })).response.status).toBe(200);
    expect((await h.call('GET', '/metrics', { key: h.keys.admin })).response.status).toBe(200);
  });

  it('counts issuances by policy and outcome, request latency by route, and readiness', async () => {
    await h.call('POST', '/v1/certificates', {
      key: h.keys.issuer,
      body: { csr: CSR, policy: 'web-server' },
    });
    await h.call('POST', '/v1/certificates', { key: h.keys.issuer, body: { csr: CSR, policy: 'refuse' } });
    await h.call('GET', '/v1/certificates/00ff', { key: h.keys.auditor });
    const { response, body } = await h.call('GET', '/metrics', { key: h.keys.auditor });
    expect(response.headers.get('content-type')).toContain('text/plain');
    const text = (body as Buffer).toString('utf8');
    expect(text).toContain('signet_issuances_total{policy="web-server",outcome="issued"} 1');
    // 'refuse' is not a loaded policy: its label is folded into 'unknown', bounding the label set.
    expect(text).toContain('signet_issuances_total{policy="unknown",outcome="policy.refused"} 1');
    expect(text).toMatch(
      /signet_http_request_duration_seconds_count\{method="GET",route="\/v1\/certificates\/:serial",status="404"\} 1/,
    );
    expect(text).not.toContain('00ff');
    expect(text).toContain('signet_ready{check="database"} 1');
    expect(text).toContain('signet_ready{check="partition"} 1');
    expect(text).toMatch(/signet_database_duration_seconds_count\{operation="ping"\} [1-9]/);
  });

  it('reports a sealed partition as not ready', async () => {
    h = await buildHarness({
      database,
      ca: scriptedCa(),
      overrides: {
        metrics: createMetrics(),
        readiness: { ...readyProbe, partition: async () => ({ state: 'sealed' }) },
      },
    });
    const text = ((await h.call('GET', '/metrics', { key: h.keys.admin })).body as Buffer).toString('utf8');
    expect(text).toContain('signet_ready{check="partition"} 0');
    const ready = await h.call('GET', '/readyz');
    expect(ready.response.status).toBe(503);
    expect(ready.body).toMatchObject({
      code: 'service.not_ready',
      checks: { database: 'ok', partition: 'sealed' },
    });
    expect(ready.response.headers.get('retry-after')).toBe('5');
  });

  it('names unusable members and members lacking keys in /readyz, ready while one member is usable', async () => {
    const members = [
      { partition: 'issuing', member: 'tls://192.0.2.11:7001', state: 'up', inFlight: 0, failovers: 0 },
      { partition: 'issuing', member: 'tls://192.0.2.12:7001', state: 'down', inFlight: 0, failovers: 2 },
      {
        partition: 'issuing',
        member: 'tls://192.0.2.13:7001',
        state: 'missing-keys',
        inFlight: 0,
        failovers: 0,
      },
    ];
    h = await buildHarness({
      database,
      ca: scriptedCa(),
      overrides: { metrics: createMetrics(), readiness: { ...readyProbe, members: () => members } },
    });
    const ready = await h.call('GET', '/readyz');
    expect(ready.response.status).toBe(200);
    expect(ready.body).toMatchObject({
      status: 'ready',
      checks: {
        database: 'ok',
        partition: 'ok',
        members: 'issuing tls://192.0.2.12:7001 down',
        keys: 'issuing tls://192.0.2.13:7001 missing-keys',
      },
    });
    members[0]!.state = 'up';
    members.splice(1, 2);
    expect((await h.call('GET', '/readyz')).body).toMatchObject({ checks: { members: 'ok', keys: 'ok' } });
  });

  it('counts faults: 5xx answers by problem code and not-ready answers by failed check', async () => {
    h = await buildHarness({
      database,
      ca: scriptedCa(),
      overrides: {
        metrics: createMetrics(),
        readiness: {
          ...readyProbe,
          database: async () => {
            throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
          },
        },
      },
    });
    expect((await h.call('GET', '/readyz')).response.status).toBe(503);
    expect((await h.call('GET', '/readyz')).response.status).toBe(503);
    const text = ((await h.call('GET', '/metrics', { key: h.keys.admin })).body as Buffer).toString('utf8');
    expect(text).toContain('signet_readiness_failures_total{check="database"} 2');
    expect(text).not.toContain('signet_readiness_failures_total{check="partition"}');
    expect(text).toContain('signet_error_responses_total{status="503",code="service.not_ready"} 2');
  });

  it('counts answers of a database that went away as db.unavailable', async () => {
    h = await buildHarness({
      database,
      ca: scriptedCa(),
      overrides: {
        metrics: createMetrics(),
        policies: {
          ...h.deps.policies,
          list: () => {
            throw Object.assign(new Error('terminating connection'), { code: '57P01' });
          },
        },
      },
    });
    const refused = await h.call('GET', '/v1/policies', { key: h.keys.admin });
    expect(refused.response.status).toBe(503);
    const text = ((await h.call('GET', '/metrics', { key: h.keys.admin })).body as Buffer).toString('utf8');
    expect(text).toContain('signet_error_responses_total{status="503",code="db.unavailable"} 1');
  });

  it('answers 503 db.unavailable, not a 500 nor a free pass, when the shared rate-limit buckets cannot be reached', async () => {
    h = await buildHarness({
      database,
      ca: scriptedCa(),
      overrides: {
        metrics: createMetrics(),
        limiter: createSharedCredentialLimiter({
          perMinute: 600,
          buckets: {
            take: async () => {
              throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
            },
          },
        }),
      },
    });
    const refused = await h.call('GET', '/v1/policies', { key: h.keys.admin });
    expect(refused.response.status).toBe(503);
    expect(refused.body).toMatchObject({ code: 'db.unavailable' });
    expect(refused.response.headers.get('retry-after')).toBe('5');
  });

  it('serves the same metrics without a credential on the separate metrics listener, and nothing else there', async () => {
    const app = createMetricsApp(metrics(), readyProbe);
    const scrape = await app.request('/metrics');
    expect(scrape.status).toBe(200);
    expect(await scrape.text()).toContain('signet_ready');
    expect((await app.request('/v1/apikeys')).status).toBe(404);
  });
});

describe.skipIf(!existsSync(CHROMIUM) && process.env.CI !== 'true')('GET /docs', () => {
  // The server the reference names is server.publicUrl, not the address the browser used.
  const PUBLIC_URL = 'https://ca.example.com:8443';
  let server: RunningServer;
  beforeEach(async () => {
    h = await buildHarness({ database, ca: scriptedCa(), options: { publicUrl: PUBLIC_URL } });
    server = await startServer(h.app, { port: 0 });
  });
  afterAll(async () => {
    await server?.close(100);
  });

  it('renders the interactive reference from openapi.yaml in headless Chromium, with no request leaving the server', async () => {
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    try {
      const page = await browser.newPage();
      const foreign: string[] = [];
      const requested: string[] = [];
      const errors: string[] = [];
      page.on('request', (request) => {
        requested.push(new URL(request.url()).pathname);
        if (!request.url().startsWith(server.url) && !request.url().startsWith('data:'))
          foreign.push(request.url());
      });
      page.on('console', (message) => {
        if (message.type() === 'error') errors.push(message.text());
      });
      page.on('pageerror', (error) => errors.push(error.message));
      const response = await page.goto(`${server.url}/docs`);
      expect(response?.status()).toBe(200);
      await page.getByText('Issue a certificate from a PKCS#10 CSR').first().waitFor({ timeout: 30_000 });
      expect(await page.title()).toBe('Signet API');
      // The API server shown is the configured public URL.
      await page.getByText(PUBLIC_URL).first().waitFor({ timeout: 10_000 });
      expect(foreign).toEqual([]);
      expect(requested).toEqual(expect.arrayContaining(['/docs', '/docs/rapidoc.js', '/openapi.yaml']));
      // The request samples are openapi.yaml's examples (issue #33: the sample sent `"csr": ""`).
      const samples = await page
        .locator('textarea')
        .evaluateAll((areas) => areas.map((area) => (area as unknown as { value: string }).value));
      const csrs = samples.flatMap((text) => {
        try {
          const csr = (JSON.parse(text) as { csr?: unknown }).csr;
          return csr === undefined ? [] : [csr];
        } catch {
          return [];
        }
      });
      expect(csrs.length).toBeGreaterThanOrEqual(2);
      for (const csr of csrs) expect(csr).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n[A-Za-z0-9+/]/);
      // Nothing blocked by the page's content security policy, nothing thrown.
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 60_000);

  it('serves a page that names server.publicUrl and only its own script, under a strict content security policy', async () => {
    const { response } = await h.call('GET', '/docs');
    const html = await response.clone().text();
    expect(html).toContain(`server-url="${PUBLIC_URL}"`);
    expect(html).toMatch(/<script type="module" src="\/docs\/rapidoc.js"><\/script>/);
    expect(html).not.toMatch(/https?:\/\/(?!ca\.example\.com)/);
    const csp = response.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self';");
    expect(csp).toContain(`connect-src 'self' ${PUBLIC_URL}`);
    const bundle = await h.app.request('/docs/rapidoc.js');
    expect(bundle.headers.get('content-type')).toContain('text/javascript');
    expect((await bundle.arrayBuffer()).byteLength).toBeGreaterThan(100_000);
  });
});
