import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  bearer,
  call,
  curl,
  dir,
  haveTools,
  itClosesCleanly,
  keys,
  rootPem,
  serving,
  useStack,
} from './helpers/stack.ts';

/** Issuers, policies, health, the contract, docs and metrics, and the listening server (the service: helpers/stack.ts). */
describe.skipIf(!haveTools)('the API on the real service: issuers, policies and operations', () => {
  useStack();

  describe('issuers, policies and operations', () => {
    it('lists the issuers and answers each one', async () => {
      const list = await call('GET', '/v1/issuers', { key: keys.revoker });
      const ids = list.body.items.map((issuer: { id: string }) => issuer.id);
      expect(ids).toEqual(expect.arrayContaining(['dev-root', 'dev-intermediate']));
      const one = await call('GET', '/v1/issuers/dev-intermediate', { key: keys.issuer });
      expect(one.body).toMatchObject({
        id: 'dev-intermediate',
        parent: 'dev-root',
        keyAlgorithm: expect.stringMatching(/^ecdsa-|^rsa-|^ed25519/),
      });
      expect((await call('GET', '/v1/issuers/nope', { key: keys.issuer })).body.code).toBe(
        'issuer.not_found',
      );
    });

    it('serves issuer certificates and chains to anyone, as DER, PEM and a chain up to the root', async () => {
      const der = await curl([`${serving.server.url}/v1/issuers/dev-intermediate/certificate`]);
      expect(der.status).toBe(200);
      expect(der.headers.toLowerCase()).toContain('content-type: application/pkix-cert');
      const intermediate = new X509Certificate(der.body);
      const pem = await curl([
        '-H',
        'accept: application/x-pem-file',
        `${serving.server.url}/v1/issuers/dev-intermediate/certificate`,
      ]);
      expect(new X509Certificate(pem.body).fingerprint256).toBe(intermediate.fingerprint256);
      const chain = await curl([`${serving.server.url}/v1/issuers/dev-intermediate/chain`]);
      expect(chain.headers.toLowerCase()).toContain('content-type: application/pem-certificate-chain');
      const pems = chain.body
        .toString('utf8')
        .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g)!;
      expect(pems.map((p) => new X509Certificate(p).fingerprint256)).toEqual([
        intermediate.fingerprint256,
        new X509Certificate(rootPem).fingerprint256,
      ]);
      expect((await curl([`${serving.server.url}/v1/issuers/nope/chain`])).status).toBe(404);
    });

    it('lists the shipped policies and shows one as loaded', async () => {
      const list = await call('GET', '/v1/policies', { key: keys.auditor });
      expect(list.body.items.map((p: { name: string }) => p.name)).toEqual([
        'client-mtls',
        'spiffe-workload',
        'web-server',
      ]);
      const one = await call('GET', '/v1/policies/web-server', { key: keys.revoker });
      expect(one.body).toMatchObject({
        name: 'web-server',
        issuer: 'dev-intermediate',
        policy: expect.any(Object),
      });
      expect((await call('GET', '/v1/policies/nope', { key: keys.revoker })).body.code).toBe(
        'policy.not_found',
      );
      const reload = await call('POST', '/v1/policies/reload', { key: keys.admin });
      expect(reload.body.loaded).toEqual(['client-mtls', 'spiffe-workload', 'web-server']);
    });

    it('answers liveness, readiness with the partition unsealed, and its own contract', async () => {
      expect((await call('GET', '/healthz')).body).toEqual({ status: 'ok' });
      // The dev root's CRL from init lasts a year: nothing to warn about yet.
      expect((await call('GET', '/readyz')).body).toEqual({
        status: 'ready',
        checks: { database: 'ok', partition: 'ok' },
        warnings: [],
      });
      const listener = await curl([`${serving.server.url}/readyz`]);
      expect(JSON.parse(listener.body.toString('utf8')).warnings).toEqual([]);
      const yaml = await curl([`${serving.server.url}/openapi.yaml`]);
      expect(yaml.body.toString('utf8')).toContain('openapi: 3.1.0');
    });
  });

  describe('the listening server', () => {
    it('answers errors as problem documents with the request id the logs carry', async () => {
      const bodyFile = path.join(dir, 'big.json');
      writeFileSync(bodyFile, JSON.stringify({ csr: 'A'.repeat(70 * 1024), policy: 'web-server' }));
      const big = await curl([
        '-X',
        'POST',
        ...bearer('issuer'),
        '-H',
        'content-type: application/json',
        '--data-binary',
        `@${bodyFile}`,
        `${serving.server.url}/v1/certificates`,
      ]);
      expect(big.status).toBe(413);
      expect(big.headers.toLowerCase()).toContain('content-type: application/problem+json');
      const problem = JSON.parse(big.body.toString('utf8'));
      expect(problem).toMatchObject({
        code: 'request.body_too_large',
        status: 413,
        requestId: expect.any(String),
      });
      expect(big.headers.toLowerCase()).toContain(`x-request-id: ${problem.requestId}`);

      const anonymous = await curl([`${serving.server.url}/v1/certificates`]);
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers.toLowerCase()).toContain('www-authenticate: bearer');
      expect(JSON.parse(anonymous.body.toString('utf8')).code).toBe('auth.credential_missing');
    });

    it('refuses a request head over the header limit with 431', async () => {
      const huge = await curl(['-H', `x-filler: ${'a'.repeat(32 * 1024)}`, `${serving.server.url}/healthz`]);
      expect(huge.status).toBe(431);
    });
  });

  describe('afterwards', () => {
    it('serves metrics and the docs page too', async () => {
      expect((await call('GET', '/metrics', { key: keys.auditor })).response.status).toBe(200);
      expect((await call('GET', '/docs')).response.status).toBe(200);
      expect((await call('GET', '/docs/rapidoc.js')).response.status).toBe(200);
    });

    itClosesCleanly('service', 10);
  });
});
