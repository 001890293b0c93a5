import { beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/api/auth/api-keys.ts';
import type { Role } from '../../src/api/env.ts';
import { call, deps, haveTools, itClosesCleanly, keys, makeCsr, ROLES, useStack } from './helpers/stack.ts';

/** Every endpoint against every role, without a credential and with an expired key (the service: helpers/stack.ts). */
describe.skipIf(!haveTools)('the API on the real service: every endpoint x every role', () => {
  useStack();

  describe('every endpoint x every role', () => {
    interface Endpoint {
      method: string;
      path: () => string;
      /** Roles allowed besides admin. */
      roles: Role[] | 'all';
      body?: () => unknown;
    }
    let serial = '';
    const csr = () => makeCsr('matrix', ['matrix.example.com']).pem;
    const throwawayKeyId = async () => (await createApiKey(deps.apiKeys, { roles: ['auditor'] })).id;
    let keyId = '';
    const ENDPOINTS: Endpoint[] = [
      {
        method: 'POST',
        path: () => '/v1/certificates',
        roles: ['issuer'],
        body: () => ({ csr: csr(), policy: 'web-server' }),
      },
      { method: 'GET', path: () => '/v1/certificates', roles: ['issuer', 'revoker', 'auditor'] },
      { method: 'GET', path: () => `/v1/certificates/${serial}`, roles: ['issuer', 'revoker', 'auditor'] },
      {
        method: 'POST',
        path: () => '/v1/policies/web-server/evaluate',
        roles: ['issuer'],
        body: () => ({ csr: csr() }),
      },
      { method: 'POST', path: () => '/v1/policies/reload', roles: [] },
      { method: 'GET', path: () => '/v1/policies', roles: 'all' },
      { method: 'GET', path: () => '/v1/policies/web-server', roles: 'all' },
      { method: 'POST', path: () => '/v1/apikeys', roles: [], body: () => ({ roles: ['auditor'] }) },
      { method: 'GET', path: () => '/v1/apikeys', roles: [] },
      { method: 'DELETE', path: () => `/v1/apikeys/${keyId}`, roles: [] },
      {
        method: 'POST',
        path: () => '/v1/acme/eab-keys',
        roles: [],
        body: () => ({ directory: 'dev', policies: ['web-server'], expiresIn: 'P1D' }),
      },
      { method: 'GET', path: () => '/v1/issuers', roles: 'all' },
      { method: 'GET', path: () => '/v1/issuers/dev-intermediate', roles: 'all' },
      { method: 'GET', path: () => '/v1/audit', roles: ['auditor'] },
      {
        method: 'POST',
        path: () => `/v1/certificates/${serial}/revoke`,
        roles: ['revoker'],
        body: () => ({ reason: 'superseded' }),
      },
    ];
    const CASES = ENDPOINTS.flatMap((endpoint) =>
      ROLES.map((role) => ({
        endpoint,
        role,
        name: `${endpoint.method} ${endpoint.path
          .toString()
          .replace(/^\(\) => /, '')
          .replaceAll('`', '')}`,
        allowed: role === 'admin' || endpoint.roles === 'all' || endpoint.roles.includes(role),
      })),
    );

    beforeAll(async () => {
      serial = (
        await call('POST', '/v1/certificates', {
          key: keys.issuer,
          body: { csr: csr(), policy: 'web-server' },
        })
      ).body.serialNumber;
    });

    it.each(CASES)('$name as $role: allowed=$allowed', async ({ endpoint, role, allowed }) => {
      keyId = await throwawayKeyId();
      const before = (await deps.audit.list({ limit: 1 })).items[0]?.id ?? 0;
      const { response, body } = await call(endpoint.method, endpoint.path(), {
        key: keys[role],
        ...(endpoint.body ? { body: endpoint.body() } : {}),
      });
      if (allowed) {
        expect(response.status, JSON.stringify(body)).toBeLessThan(300);
        return;
      }
      expect(response.status).toBe(403);
      expect(body.code).toBe('auth.role_forbidden');
      // The refusal leaves exactly one audit record and nothing else.
      const after = (await deps.audit.list({ limit: 10 })).items.filter((event) => event.id > before);
      expect(after).toEqual([
        expect.objectContaining({ decision: 'denied', actor: expect.stringMatching(/^apikey:/) }),
      ]);
    });

    it.each(ENDPOINTS)(
      '$method $path refuses a request without a credential with 401, and an expired key with 403',
      async (endpoint) => {
        keyId = await throwawayKeyId();
        const anonymous = await call(
          endpoint.method,
          endpoint.path(),
          endpoint.body ? { body: endpoint.body() } : {},
        );
        expect(anonymous.response.status).toBe(401);
        expect(anonymous.body.code).toBe('auth.credential_missing');
        const expired = (
          await createApiKey(deps.apiKeys, { roles: ['admin'], expiresAt: new Date(Date.now() - 1000) })
        ).key;
        const late = await call(endpoint.method, endpoint.path(), {
          key: expired,
          ...(endpoint.body ? { body: endpoint.body() } : {}),
        });
        expect(late.response.status).toBe(403);
        expect(late.body.code).toBe('auth.key_expired');
      },
    );

    it('refuses an issuer key a policy it is not bound to with 403, leaving one audit record and no certificate', async () => {
      const before = (await deps.certificates.list({ limit: 1000 })).items.length;
      const csrText = makeCsr('unbound', ['alice@example.com'], '/CN=alice').pem;
      const { response, body } = await call('POST', '/v1/certificates', {
        key: keys.issuer,
        body: { csr: csrText, policy: 'client-mtls' },
      });
      expect(response.status).toBe(403);
      expect(body.code).toBe('policy.requester_not_bound');
      const [last] = (await deps.audit.list({ limit: 1 })).items;
      expect(last).toMatchObject({
        action: 'certificate.issue',
        decision: 'denied',
        target: 'policy:client-mtls',
      });
      expect((await deps.certificates.list({ limit: 1000 })).items.length).toBe(before);
    });
  });

  describe('afterwards', () => {
    itClosesCleanly('roles', 80);
  });
});
