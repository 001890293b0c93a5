import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AsnConvert } from '@peculiar/asn1-schema';
import { beforeAll, describe, expect, it } from 'vitest';
import { signDevRootCrl } from '../helpers/dev-root-crl.ts';
import { decodeOcspResponse } from '../revocation/helpers/ocsp.ts';
import { crlPem } from '../revocation/helpers/pki.ts';
import {
  call,
  curl,
  dataDir,
  dir,
  execFileAsync,
  haveTools,
  itClosesCleanly,
  keys,
  makeCsr,
  openssl,
  rootPem,
  secrets,
  serving,
  useStack,
  verifyChain,
} from './helpers/stack.ts';

/** Revocation (by credential and by key), renewal by key, CRLs and OCSP (the service: helpers/stack.ts). */
describe.skipIf(!haveTools)('the API on the real service: revocation, CRLs and OCSP', () => {
  useStack();

  describe('revocation, CRLs and OCSP', () => {
    let serial: string;
    let leafFile: string;
    let keyFile: string;
    const intermediateFile = () => path.join(dir, 'intermediate.pem');

    beforeAll(async () => {
      const csr = makeCsr('revokee', ['revokee.example.com']);
      keyFile = csr.keyFile;
      const issued = await call('POST', '/v1/certificates', {
        key: keys.issuer,
        body: { csr: csr.pem, policy: 'web-server' },
      });
      serial = issued.body.serialNumber;
      leafFile = path.join(dir, 'revokee.pem');
      writeFileSync(leafFile, issued.body.certificate);
      writeFileSync(intermediateFile(), issued.body.chain[0]);
      writeFileSync(path.join(dir, 'root.pem'), rootPem);
    });

    const ocspStatus = async (extra: string[] = []) => {
      const { stdout, stderr } = await execFileAsync(
        'openssl',
        [
          'ocsp',
          '-issuer',
          intermediateFile(),
          '-cert',
          leafFile,
          '-url',
          `${serving.server.url}/ocsp`,
          '-CAfile',
          path.join(dir, 'root.pem'),
          ...extra,
        ],
        { encoding: 'utf8' },
      );
      return `${stdout}${stderr}`;
    };

    it('answers openssl ocsp (POST) good, then revoked after a revoker revokes, and revoking again changes nothing', async () => {
      // Signed by the delegated responder; openssl has only the root as anchor (-CAfile).
      const answered = await ocspStatus();
      expect(answered).toContain('Response verify OK');
      expect(answered).toContain(`${leafFile}: good`);
      const first = await call('POST', `/v1/certificates/${serial}/revoke`, {
        key: keys.revoker,
        body: { reason: 'superseded' },
      });
      expect(first.response.status).toBe(200);
      expect(first.body).toMatchObject({
        serialNumber: serial,
        status: 'revoked',
        reason: 'superseded',
        outcome: 'revoked',
      });
      const again = await call('POST', `/v1/certificates/${serial}/revoke`, {
        key: keys.admin,
        body: { reason: 'cessationOfOperation' },
      });
      expect(again.body).toMatchObject({
        reason: 'superseded',
        outcome: 'unchanged',
        revokedAt: first.body.revokedAt,
      });
      expect(await ocspStatus()).toMatch(new RegExp(`${leafFile}: revoked[\\s\\S]*Reason: superseded`));
      expect((await call('GET', `/v1/certificates/${serial}`, { key: keys.auditor })).body).toMatchObject({
        status: 'revoked',
      });
    });

    it('answers OCSP by GET with the base64 request in the path, cacheable, and never answers JSON', async () => {
      const reqFile = path.join(dir, 'ocsp-req.der');
      await execFileAsync('openssl', [
        'ocsp',
        '-issuer',
        intermediateFile(),
        '-cert',
        leafFile,
        '-no_nonce',
        '-reqout',
        reqFile,
      ]);
      const encoded = encodeURIComponent(readFileSync(reqFile).toString('base64'));
      const get = await curl([`${serving.server.url}/ocsp/${encoded}`]);
      expect(get.status).toBe(200);
      expect(get.headers.toLowerCase()).toContain('content-type: application/ocsp-response');
      expect(get.headers.toLowerCase()).toMatch(/cache-control: public, max-age=\d+/);
      const respFile = path.join(dir, 'ocsp-resp.der');
      writeFileSync(respFile, get.body);
      const { stdout, stderr } = await execFileAsync(
        'openssl',
        [
          'ocsp',
          '-respin',
          respFile,
          '-issuer',
          intermediateFile(),
          '-cert',
          leafFile,
          '-CAfile',
          path.join(dir, 'root.pem'),
        ],
        { encoding: 'utf8' },
      );
      expect(`${stdout}${stderr}`).toContain('Response verify OK');

      for (const [args, name] of [
        [
          [
            '-X',
            'POST',
            '-H',
            'content-type: application/ocsp-request',
            '--data-binary',
            'garbage',
            `${serving.server.url}/ocsp`,
          ],
          'garbage POST',
        ],
        [[`${serving.server.url}/ocsp/not!base64`], 'garbage GET'],
        [
          [
            '-X',
            'POST',
            '-H',
            'content-type: application/json',
            '--data-binary',
            '{}',
            `${serving.server.url}/ocsp`,
          ],
          'JSON POST',
        ],
      ] as const) {
        const answer = await curl([...args]);
        expect(answer.status, name).toBe(200);
        expect(answer.headers.toLowerCase(), name).toContain('content-type: application/ocsp-response');
        // OCSPResponse { responseStatus malformedRequest (1) }: 30 03 0a 01 01
        expect(answer.body.toString('hex'), name).toBe('30030a0101');
      }
    });

    it('answers 1,000 identical requests without a nonce with zero partition signatures once the response exists, GET with ETag and 304', async () => {
      const csr = makeCsr('presigned', ['presigned.example.com']);
      const issued = await call('POST', '/v1/certificates', {
        key: keys.issuer,
        body: { csr: csr.pem, policy: 'web-server' },
      });
      const certFile = path.join(dir, 'presigned.pem');
      writeFileSync(certFile, issued.body.certificate);
      const reqFile = path.join(dir, 'presigned-req.der');
      await execFileAsync('openssl', [
        'ocsp',
        '-issuer',
        intermediateFile(),
        '-cert',
        certFile,
        '-no_nonce',
        '-reqout',
        reqFile,
      ]);
      const request = readFileSync(reqFile);
      const auditFile = path.join(dataDir, 'hsm/issuing/audit.log');
      const ocspSignatures = () =>
        readFileSync(auditFile, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line) as { op: string; purpose?: string; result: string })
          .filter((record) => record.op === 'sign' && record.purpose === 'ocsp').length;
      const post = () =>
        fetch(`${serving.server.url}/ocsp`, {
          method: 'POST',
          headers: { 'content-type': 'application/ocsp-request' },
          body: request,
        }).then(async (response) => Buffer.from(await response.arrayBuffer()));
      const before = ocspSignatures();
      const first = await post();
      expect(ocspSignatures()).toBe(before + 1);
      // Signed by dev-intermediate's delegated responder (signet init made it): its certificate,
      // EKU id-kp-OCSPSigning and id-pkix-ocsp-nocheck, is in `certs`.
      const { basic } = decodeOcspResponse(new Uint8Array(first));
      expect(basic!.certs).toHaveLength(1);
      const responder = new X509Certificate(Buffer.from(AsnConvert.serialize(basic!.certs![0]!)));
      expect(responder.subject).toContain('dev-intermediate OCSP responder');
      expect(responder.checkIssued(new X509Certificate(readFileSync(intermediateFile())))).toBe(true);
      const responderFile = path.join(dir, 'responder.pem');
      writeFileSync(responderFile, responder.toString());
      const text = openssl(['x509', '-noout', '-text', '-in', responderFile]);
      expect(text).toContain('OCSP Signing');
      expect(text).toContain('OCSP No Check');
      const answers: Buffer[] = [];
      for (let round = 0; round < 20; round++)
        answers.push(...(await Promise.all(Array.from({ length: 50 }, post))));
      expect(answers).toHaveLength(1000);
      expect(answers.every((answer) => answer.equals(first))).toBe(true);
      expect(ocspSignatures()).toBe(before + 1);

      const url = `${serving.server.url}/ocsp/${encodeURIComponent(request.toString('base64'))}`;
      const get = await curl([url]);
      expect(get.body.equals(first)).toBe(true);
      const etag = /^etag: (.+)$/im.exec(get.headers)![1]!.trim();
      const lastModified = /^last-modified: (.+)$/im.exec(get.headers)![1]!.trim();
      expect(get.headers).toMatch(/^expires: /im);
      expect((await curl(['-H', `if-none-match: ${etag}`, url])).status).toBe(304);
      expect((await curl(['-H', `if-modified-since: ${lastModified}`, url])).status).toBe(304);
      expect((await curl(['-H', 'if-none-match: "other"', url])).status).toBe(200);
      expect(ocspSignatures()).toBe(before + 1);
    });

    it('publishes a CRL that openssl verifies, listing the revoked serial, with ETag, Last-Modified and 304', async () => {
      await serving.runtime.revocation!.scheduler.publishNow('dev-intermediate');
      const crl = await curl([`${serving.server.url}/crl/dev-intermediate.crl`]);
      expect(crl.status).toBe(200);
      const headers = crl.headers.toLowerCase();
      expect(headers).toContain('content-type: application/pkix-crl');
      expect(headers).toMatch(/cache-control: public, max-age=\d+/);
      const etag = /etag: ("[0-9a-f]{64}")/.exec(headers)![1]!;
      const lastModified = /last-modified: (.+)\r?\n/i.exec(crl.headers)![1]!.trim();
      const crlFile = path.join(dir, 'dev-intermediate.crl');
      writeFileSync(crlFile, crl.body);
      const { stdout, stderr } = await execFileAsync(
        'openssl',
        ['crl', '-inform', 'DER', '-in', crlFile, '-CAfile', intermediateFile(), '-noout', '-text'],
        { encoding: 'utf8' },
      );
      expect(`${stdout}${stderr}`).toContain('verify OK');
      expect(stdout.replaceAll(':', '').toLowerCase()).toContain(serial.replace(/^00/, ''));

      expect(
        (await curl(['-H', `if-none-match: ${etag}`, `${serving.server.url}/crl/dev-intermediate.crl`]))
          .status,
      ).toBe(304);
      expect(
        (
          await curl([
            '-H',
            `if-modified-since: ${lastModified}`,
            `${serving.server.url}/crl/dev-intermediate.crl`,
          ])
        ).status,
      ).toBe(304);
      expect(
        (await curl(['-H', 'if-none-match: "other"', `${serving.server.url}/crl/dev-intermediate.crl`]))
          .status,
      ).toBe(200);
      expect((await curl([`${serving.server.url}/crl/dev-intermediate/0.crl`])).body.equals(crl.body)).toBe(
        true,
      );
      expect((await curl([`${serving.server.url}/crl/dev-intermediate/7.crl`])).status).toBe(404);
      expect((await curl([`${serving.server.url}/crl/nobody.crl`])).status).toBe(404);
      const viaApp = await call('GET', '/crl/dev-intermediate.crl');
      expect(viaApp.response.status).toBe(200);
      // No crl.deltaInterval in init's signet.yaml: no delta CRLs (test/slow/crl-scale.test.ts has them).
      for (const route of ['/crl/dev-intermediate/delta.crl', '/crl/dev-intermediate/0/delta.crl']) {
        const delta = await call('GET', route);
        expect(delta.response.status).toBe(404);
        expect(delta.body.code).toBe('crl.not_found');
      }
    });

    it("serves the dev root's CRL from init, then a newer one an admin posts or `signet crl import` sends through the running server", async () => {
      const rootCrl = async () => {
        const crl = await curl([`${serving.server.url}/crl/dev-root.crl`]);
        expect(crl.status).toBe(200);
        expect(crl.headers.toLowerCase()).toMatch(/cache-control: public, max-age=\d+, no-transform/);
        const file = path.join(dir, 'dev-root.crl');
        writeFileSync(file, crl.body);
        const { stdout } = await execFileAsync(
          'openssl',
          ['crl', '-inform', 'DER', '-in', file, '-CAfile', path.join(dir, 'root.pem'), '-noout', '-text'],
          { encoding: 'utf8' },
        );
        return { der: crl.body, text: stdout };
      };
      expect((await rootCrl()).text).toMatch(/X509v3 CRL Number: \n\s*1\n/);

      const now = Date.now();
      const sign = (number: bigint) =>
        signDevRootCrl(dataDir, {
          number,
          thisUpdate: new Date(now - 60_000),
          nextUpdate: new Date(now + 365 * 86_400_000),
        });
      const second = await sign(2n);
      const posted = await call('POST', '/v1/issuers/dev-root/crl', {
        key: keys.admin,
        raw: second,
        headers: { 'content-type': 'application/pkix-crl' },
      });
      expect(posted.response.status).toBe(200);
      expect(posted.body.crlNumber).toBe('2');
      expect((await rootCrl()).der.equals(Buffer.from(second))).toBe(true);

      const file = path.join(dir, 'dev-root-3.crl');
      writeFileSync(file, crlPem(await sign(3n)));
      const cli = async () => {
        try {
          const { stdout, stderr } = await execFileAsync(
            process.execPath,
            ['bin/signet.js', 'crl', 'import', '--issuer', 'dev-root', file, '--url', serving.server.url],
            { encoding: 'utf8', timeout: 60_000, env: { ...process.env, SIGNET_API_KEY: keys.admin } },
          );
          return { status: 0, stdout, stderr };
        } catch (error) {
          const failed = error as { code: number; stdout: string; stderr: string };
          return { status: failed.code, stdout: failed.stdout, stderr: failed.stderr };
        }
      };
      const imported = await cli();
      expect(imported.status).toBe(0);
      expect(JSON.parse(imported.stdout)).toMatchObject({ issuer: 'dev-root', crlNumber: '3' });
      expect((await rootCrl()).text).toMatch(/X509v3 CRL Number: \n\s*3\n/);
      const again = await cli();
      expect(again.status).toBe(1);
      expect(again.stderr).toContain('409 [crl.number_not_increasing]');
    });

    it.each([
      {
        name: 'certificateHold, which is not supported',
        body: { reason: 'certificateHold' },
        status: 400,
        code: 'revocation.reason_invalid',
      },
      {
        name: 'an unknown reason',
        body: { reason: 'keycompromised' },
        status: 400,
        code: 'revocation.reason_invalid',
      },
      {
        name: 'an invalidityDate in the future',
        body: { reason: 'keyCompromise', invalidityDate: '2999-01-01T00:00:00Z' },
        status: 400,
        code: 'revocation.invalidity_date_invalid',
      },
    ])('refuses to revoke with $name: $status $code', async ({ body, status, code }) => {
      const { response, body: problem } = await call('POST', `/v1/certificates/${serial}/revoke`, {
        key: keys.revoker,
        body,
      });
      expect(response.status).toBe(status);
      expect(problem.code).toBe(code);
    });

    it('says in the problem why certificateHold is refused', async () => {
      const { response, body: problem } = await call('POST', `/v1/certificates/${serial}/revoke`, {
        key: keys.revoker,
        body: { reason: 'certificateHold' },
      });
      expect(response.status).toBe(400);
      expect(problem.detail).toMatch(/certificateHold/);
      expect(problem.detail).toMatch(/not supported|permanent|hold/i);
    });

    it('answers 404 for revoking a serial never issued', async () => {
      const { response, body } = await call('POST', '/v1/certificates/0abc/revoke', {
        key: keys.revoker,
        body: { reason: 'unspecified' },
      });
      expect(response.status).toBe(404);
      expect(body.code).toBe('certificate.not_found');
    });

    it('renews by proof of key possession without a credential, for the same names (issue #32)', async () => {
      const csr = makeCsr('renew', ['renew.example.com']);
      const issued = await call('POST', '/v1/certificates', {
        key: keys.issuer,
        body: { csr: csr.pem, policy: 'web-server' },
      });
      const { importPKCS8, exportJWK, CompactSign } = await import('jose');
      const { createPrivateKey, createPublicKey } = await import('node:crypto');
      const privatePem = readFileSync(csr.keyFile, 'utf8');
      const jwk = await exportJWK(createPublicKey(createPrivateKey(privatePem)));
      const claims = { serial: issued.body.serialNumber, iat: Math.floor(Date.now() / 1000), jti: 'renew-1' };
      const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
        .setProtectedHeader({ alg: 'ES256', jwk })
        .sign(await importPKCS8(privatePem, 'ES256'));
      secrets.push(jws.split('.')[2]!);
      const renewed = await call('POST', `/v1/certificates/${issued.body.serialNumber}/renew`, {
        raw: jws,
        headers: { 'content-type': 'application/jose' },
      });
      expect(renewed.response.status).toBe(201);
      expect(renewed.body.serialNumber).not.toBe(issued.body.serialNumber);
      expect(new X509Certificate(renewed.body.certificate).subjectAltName).toBe('DNS:renew.example.com');
      expect(verifyChain('renewed', renewed.body.certificate, renewed.body.chain.join(''))).toContain(
        'leaf: OK',
      );
    });

    it('revokes by proof of key possession without a credential, once per jti', async () => {
      const csr = makeCsr('bykey', ['bykey.example.com']);
      const issued = await call('POST', '/v1/certificates', {
        key: keys.issuer,
        body: { csr: csr.pem, policy: 'web-server' },
      });
      const { importPKCS8, exportJWK, CompactSign } = await import('jose');
      const { createPrivateKey, createPublicKey } = await import('node:crypto');
      const privatePem = readFileSync(csr.keyFile, 'utf8');
      const jwk = await exportJWK(createPublicKey(createPrivateKey(privatePem)));
      const sign = async (jti: string) =>
        new CompactSign(
          new TextEncoder().encode(
            JSON.stringify({
              serial: issued.body.serialNumber,
              reason: 'keyCompromise',
              iat: Math.floor(Date.now() / 1000),
              jti,
            }),
          ),
        )
          .setProtectedHeader({ alg: 'ES256', jwk })
          .sign(await importPKCS8(privatePem, 'ES256'));
      const jws = await sign('jti-1');
      secrets.push(jws.split('.')[2]!);
      const revoked = await call('POST', '/v1/revocations/by-key', {
        raw: jws,
        headers: { 'content-type': 'application/jose' },
      });
      expect(revoked.response.status).toBe(200);
      expect(revoked.body).toMatchObject({
        serialNumber: issued.body.serialNumber,
        reason: 'keyCompromise',
        outcome: 'revoked',
      });
      const replay = await call('POST', '/v1/revocations/by-key', { body: { jws } });
      expect(replay.response.status).toBe(409);
      expect(replay.body.code).toBe('revocation.jti_replayed');
      const forged = await call('POST', '/v1/revocations/by-key', {
        raw: `${jws.slice(0, -4)}AAAA`,
        headers: { 'content-type': 'application/jose' },
      });
      expect(forged.response.status).toBe(400);
      expect(forged.body.code).toBe('revocation.jws_invalid');
      void keyFile;
    });
  });

  describe('afterwards', () => {
    it('answers the public endpoints through the app as through the listener', async () => {
      expect((await call('GET', '/openapi.yaml')).response.status).toBe(200);
      expect((await call('GET', '/v1/issuers/dev-intermediate/certificate')).response.status).toBe(200);
      expect((await call('GET', '/v1/issuers/dev-intermediate/chain')).response.status).toBe(200);
      expect((await call('GET', '/crl/dev-intermediate/0.crl')).response.status).toBe(200);
      const request = readFileSync(path.join(dir, 'ocsp-req.der'));
      const post = await call('POST', '/ocsp', {
        raw: new Uint8Array(request),
        headers: { 'content-type': 'application/ocsp-request' },
      });
      const get = await call('GET', `/ocsp/${encodeURIComponent(request.toString('base64'))}`);
      // OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED successful (0), ... } after a long-form length.
      for (const answer of [post, get])
        expect((answer.body as Buffer).subarray(4, 7).toString('hex')).toBe('0a0100');
      expect(get.response.headers.get('content-type')).toBe('application/ocsp-response');
    });

    itClosesCleanly('revocation', 20);
  });
});
