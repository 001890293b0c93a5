import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CallOptions } from './helpers/harness.ts';
import {
  bearer,
  call,
  curl,
  deps,
  dir,
  haveTools,
  itClosesCleanly,
  keys,
  makeCsr,
  rootPem,
  serving,
  useStack,
  verifyChain,
} from './helpers/stack.ts';

/** Issuing and reading certificates, and the audit log of what was issued (the service: helpers/stack.ts). */
describe.skipIf(!haveTools)('the API on the real service: certificates', () => {
  useStack();

  describe('issuance', () => {
    it('issues from a JSON body posted with curl, and openssl verifies the chain up to the root', async () => {
      const csr = makeCsr('curl-json', ['www.example.com']);
      const bodyFile = path.join(dir, 'body.json');
      writeFileSync(bodyFile, JSON.stringify({ csr: csr.pem, policy: 'web-server', validity: 'P30D' }));
      const { status, headers, body } = await curl([
        '-X',
        'POST',
        ...bearer('issuer'),
        '-H',
        'content-type: application/json',
        '--data-binary',
        `@${bodyFile}`,
        `${serving.server.url}/v1/certificates`,
      ]);
      expect(status).toBe(201);
      const issued = JSON.parse(body.toString('utf8'));
      expect(headers.toLowerCase()).toContain(`location: /v1/certificates/${issued.serialNumber}`);
      expect(issued).toMatchObject({ policy: 'web-server', issuer: 'dev-intermediate' });
      expect(verifyChain('curl-json', issued.certificate, issued.chain.join(''))).toContain('leaf: OK');
      // 30 days, counted inclusively (BR §1.6.1), so notAfter - notBefore is 30 days less a second.
      const lifetime = new Date(issued.notAfter).getTime() - new Date(issued.notBefore).getTime();
      expect(lifetime).toBeGreaterThanOrEqual(30 * 86_400_000 - 1000);
      expect(lifetime).toBeLessThanOrEqual(30 * 86_400_000 + 60_000);
      const leaf = new X509Certificate(issued.certificate);
      expect(leaf.checkHost('www.example.com')).toBe('www.example.com');
      expect(issued.chain.map((pem: string) => new X509Certificate(pem).subject)).not.toContain(
        new X509Certificate(rootPem).subject,
      );
    });

    it('issues from a raw DER application/pkcs10 body with ?policy=, answering the PEM chain itself', async () => {
      const csr = makeCsr('curl-raw', ['api.example.com']);
      const derFile = path.join(dir, 'curl-raw.der');
      writeFileSync(derFile, csr.der);
      const { status, headers, body } = await curl([
        '-X',
        'POST',
        ...bearer('issuer'),
        '-H',
        'content-type: application/pkcs10',
        '-H',
        'accept: application/pem-certificate-chain',
        '--data-binary',
        `@${derFile}`,
        `${serving.server.url}/v1/certificates?policy=web-server`,
      ]);
      expect(status).toBe(201);
      expect(headers.toLowerCase()).toContain('content-type: application/pem-certificate-chain');
      const pems = body
        .toString('utf8')
        .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g)!;
      expect(pems.length).toBe(2);
      expect(verifyChain('curl-raw', pems[0]!, pems.slice(1).join(''))).toContain('leaf: OK');
    });

    it('refuses a name the policy does not allow with 403 and every violation, and stores nothing', async () => {
      const before = (await deps.certificates.list({ limit: 1000 })).items.length;
      const csr = makeCsr('refused', ['www.example.org', 'internal.example.com']);
      const { response, body } = await call('POST', '/v1/certificates', {
        key: keys.issuer,
        body: { csr: csr.pem, policy: 'web-server' },
      });
      expect(response.status).toBe(403);
      expect(body.code).toBe('policy.refused');
      expect(body.violations.map((v: { code: string }) => v.code).sort()).toEqual([
        'policy.cn_not_in_sans',
        'policy.dns_not_allowed',
        'policy.san_denied',
      ]);
      expect((await deps.certificates.list({ limit: 1000 })).items.length).toBe(before);
    });

    it.each([
      { name: 'garbage instead of a CSR', csr: 'hello', code: 'csr.pem_invalid' },
      { name: 'a CSR whose signature does not verify', csr: 'tampered', code: 'csr.signature_invalid' },
    ])('refuses $name with 400 $code', async ({ csr, code }) => {
      let text = csr;
      if (csr === 'tampered') {
        const der = Buffer.from(makeCsr('tampered', ['t.example.com']).der);
        der[der.length - 10]! ^= 0x01;
        text = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
      }
      const { response, body } = await call('POST', '/v1/certificates', {
        key: keys.issuer,
        body: { csr: text, policy: 'web-server' },
      });
      expect(response.status).toBe(400);
      expect(body.code).toMatch(/^csr\./);
      expect([code, 'csr.malformed']).toContain(body.code);
    });

    it('answers an unknown policy with 400 policy.unknown', async () => {
      const csr = makeCsr('nopolicy', ['n.example.com']);
      const { response, body } = await call('POST', '/v1/certificates', {
        key: keys.admin,
        body: { csr: csr.pem, policy: 'no-such-policy' },
      });
      expect(response.status).toBe(400);
      expect(body.code).toBe('policy.unknown');
    });

    it('replays an issuance for the same Idempotency-Key and body instead of issuing twice', async () => {
      const csr = makeCsr('idem', ['idem.example.com']);
      const options: CallOptions = {
        key: keys.issuer,
        body: { csr: csr.pem, policy: 'web-server' },
        headers: { 'idempotency-key': 'idem-1' },
      };
      const first = await call('POST', '/v1/certificates', options);
      const second = await call('POST', '/v1/certificates', options);
      expect(first.response.status).toBe(201);
      expect(second.body.serialNumber).toBe(first.body.serialNumber);
      expect(second.response.headers.get('location')).toBe(first.response.headers.get('location'));
      const other = await call('POST', '/v1/certificates', {
        ...options,
        body: { csr: csr.pem, policy: 'web-server', validity: 'P1D' },
      });
      expect(other.response.status).toBe(422);
    });

    it('evaluates a request without signing, with a decision for every name', async () => {
      const before = (await deps.certificates.list({ limit: 1000 })).items.length;
      const csr = makeCsr('dry', ['dry.example.com', 'evil.example.org']);
      const { response, body } = await call('POST', '/v1/policies/web-server/evaluate', {
        key: keys.issuer,
        body: { csr: csr.pem },
      });
      expect(response.status).toBe(200);
      expect(body.allowed).toBe(false);
      expect(body.decisions).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ value: 'dry.example.com', allowed: true }),
          expect.objectContaining({ value: 'evil.example.org', allowed: false }),
        ]),
      );
      expect(body.violations).toEqual([expect.objectContaining({ code: 'policy.dns_not_allowed' })]);
      expect((await deps.certificates.list({ limit: 1000 })).items.length).toBe(before);
    });
  });

  describe('reading certificates', () => {
    let mine: string;
    let theirs: string;

    beforeAll(async () => {
      const issue = async (key: string, host: string) =>
        (
          await call('POST', '/v1/certificates', {
            key,
            body: { csr: makeCsr(host, [host]).pem, policy: 'web-server' },
          })
        ).body.serialNumber as string;
      mine = await issue(keys.issuer, 'mine.example.com');
      theirs = await issue(keys.admin, 'theirs.example.com');
    });

    it('answers a certificate as JSON, DER or PEM, and accepts the serial with colons and in upper case', async () => {
      const json = await call('GET', `/v1/certificates/${mine}`, { key: keys.auditor });
      expect(json.body).toMatchObject({
        serialNumber: mine,
        status: 'valid',
        policy: 'web-server',
        requester: expect.stringMatching(/^apikey:/),
      });
      const der = await call('GET', `/v1/certificates/${mine}`, {
        key: keys.auditor,
        headers: { accept: 'application/pkix-cert' },
      });
      expect(new X509Certificate(der.body as Buffer).serialNumber.toLowerCase()).toBe(
        mine.replace(/^00/, ''),
      );
      const pem = await call('GET', `/v1/certificates/${mine.toUpperCase().match(/../g)!.join(':')}`, {
        key: keys.revoker,
        headers: { accept: 'application/x-pem-file' },
      });
      expect((pem.body as Buffer).toString('utf8')).toBe(json.body.certificate);
    });

    it('lets the issuer role read its own certificates and no one else', async () => {
      expect((await call('GET', `/v1/certificates/${mine}`, { key: keys.issuer })).response.status).toBe(200);
      const other = await call('GET', `/v1/certificates/${theirs}`, { key: keys.issuer });
      expect(other.response.status).toBe(404);
      const list = await call('GET', '/v1/certificates?limit=500', { key: keys.issuer });
      const serials = list.body.items.map((item: { serialNumber: string }) => item.serialNumber);
      expect(serials).toContain(mine);
      expect(serials).not.toContain(theirs);
    });

    it('pages through certificates with an opaque cursor and filters them', async () => {
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const page: {
          body: { items: { serialNumber: string; policy: string }[]; nextCursor: string | null };
        } = await call(
          'GET',
          `/v1/certificates?limit=2&policy=web-server&status=valid${cursor ? `&cursor=${cursor}` : ''}`,
          { key: keys.auditor },
        );
        expect(page.body.items.length).toBeLessThanOrEqual(2);
        seen.push(...page.body.items.map((item) => item.serialNumber));
        cursor = page.body.nextCursor;
      } while (cursor);
      expect(new Set(seen).size).toBe(seen.length);
      expect(seen).toEqual(expect.arrayContaining([mine, theirs]));
      const none = await call('GET', '/v1/certificates?status=revoked', { key: keys.auditor });
      expect(none.body.items).toEqual([]);
      const expiring = await call(
        'GET',
        `/v1/certificates?expiresBefore=${encodeURIComponent('2000-01-01T00:00:00Z')}`,
        { key: keys.auditor },
      );
      expect(expiring.body.items).toEqual([]);
    });

    it.each([
      {
        name: 'a serial that is not hex',
        path: '/v1/certificates/xyz',
        code: 'request.serial_invalid',
        status: 400,
      },
      {
        name: 'a serial never issued',
        path: '/v1/certificates/0123456789abcdef',
        code: 'certificate.not_found',
        status: 404,
      },
      {
        name: 'a damaged cursor',
        path: '/v1/certificates?cursor=bm90LWEtY3Vyc29y',
        code: 'request.cursor_invalid',
        status: 400,
      },
      {
        name: 'a limit over the maximum',
        path: '/v1/certificates?limit=100000',
        code: 'request.invalid_query',
        status: 400,
      },
      {
        name: 'an unknown status',
        path: '/v1/certificates?status=lost',
        code: 'request.invalid_query',
        status: 400,
      },
      {
        name: 'an unknown query parameter',
        path: '/v1/certificates?colour=red',
        code: 'request.invalid_query',
        status: 400,
      },
    ])('answers $name with $status $code', async ({ path: target, code, status }) => {
      const { response, body } = await call('GET', target, { key: keys.auditor });
      expect(response.status).toBe(status);
      expect(body.code).toBe(code);
    });
  });

  describe('the audit log', () => {
    it('shows the audit log to auditors, filtered and paged', async () => {
      const issued = await call('GET', '/v1/audit?action=certificate.issue&decision=allowed&limit=1', {
        key: keys.auditor,
      });
      expect(issued.body.items).toHaveLength(1);
      expect(issued.body.items[0]).toMatchObject({ action: 'certificate.issue', decision: 'allowed' });
      expect(issued.body.nextCursor).toEqual(expect.any(String));
      const next = await call(
        'GET',
        `/v1/audit?action=certificate.issue&decision=allowed&limit=1&cursor=${issued.body.nextCursor}`,
        { key: keys.auditor },
      );
      expect(next.body.items[0].id).not.toBe(issued.body.items[0].id);
    });
  });

  describe('afterwards', () => {
    it("observes partition signatures and issuance writes in the listener's /metrics", async () => {
      const response = await fetch(`${serving.server.url}/metrics`, {
        headers: { authorization: `Bearer ${keys.auditor}` },
      });
      expect(response.status).toBe(200);
      const text = await response.text();
      expect(text).toMatch(/signet_partition_sign_duration_seconds_count\{purpose="certificate"\} [1-9]/);
      expect(text).toMatch(
        /signet_database_duration_seconds_count\{operation="certificates\.storeIssued"\} [1-9]/,
      );
    });

    itClosesCleanly('certificates', 20);
  });
});
