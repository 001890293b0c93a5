import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { scriptedCa } from './helpers/fakes.ts';
import { buildHarness, type Harness } from './helpers/harness.ts';

let database: TestDatabase;
let h: Harness;

beforeAll(async () => {
  database = await createTestDatabase('pglite');
});
afterAll(async () => {
  await database?.destroy();
});

async function build() {
  await database.reset();
  h = await buildHarness({ database, ca: scriptedCa() });
}

describe('hostile input', () => {
  beforeEach(build);

  it.each([
    {
      name: 'a NUL in an API key description',
      method: 'POST',
      path: '/v1/apikeys',
      body: { roles: ['auditor'], description: 'a\u0000b' },
    },
    { name: 'a NUL in the audit actor', method: 'GET', path: '/v1/audit?actor=%00' },
    { name: 'a NUL in the audit target', method: 'GET', path: '/v1/audit?target=%00' },
    { name: 'a NUL in the audit action', method: 'GET', path: '/v1/audit?action=%00' },
    { name: 'a NUL in the certificate issuer filter', method: 'GET', path: '/v1/certificates?issuer=%00' },
  ])('refuses $name with 400', async ({ method, path, body }) => {
    const { response } = await h.call(method, path, { key: h.keys.admin, ...(body ? { body } : {}) });
    expect(response.status).toBe(400);
  });

  it('refuses a repeated single-value query parameter', async () => {
    const { response } = await h.call('GET', '/v1/certificates?policy=a&policy=b', { key: h.keys.admin });
    expect(response.status).toBe(400);
  });
});
