import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../../src/lib/clock.ts';
import { encodeName } from '../../src/x509/names.ts';
import { AcmeClient, type AcmeKey, newAcmeKey } from '../helpers/acme-client.ts';
import { tlsAlpnCertificate } from '../helpers/acme-responders.ts';
import { hasTool } from '../helpers/tools.ts';
import { generateTestKey, handCsr, sanExtension, type TestKey } from '../x509/fixtures.ts';
import { type AcmeService, DIRECTORY_URL, PUBLIC_URL, startAcmeService } from './helpers.ts';

/**
 * RFC 8555 through the real service (issue #30): hand-made JWS requests for every resource and
 * every error the issue lists, answered with ACME problem types, a fresh Replay-Nonce and the
 * index link, and never a 500. Certificates come from the real CA and verify with openssl.
 */
const haveOpenssl = hasTool('openssl', ['version']);

let service: AcmeService;
let addressCounter = 0;
/** Each client its own address, so per-address limits of one test never reach another. */
const nextAddress = () => `198.51.100.${++addressCounter}`;

async function client(key?: AcmeKey): Promise<AcmeClient> {
  return new AcmeClient(service.fetchFrom(nextAddress()), DIRECTORY_URL, key).init();
}

async function account(): Promise<AcmeClient> {
  const c = await client();
  const answer = await c.newAccount({ termsOfServiceAgreed: true, contact: ['mailto:ops@example.com'] });
  expect(answer.status).toBe(201);
  return c;
}

function csrFor(key: TestKey, names: { type: 'dns' | 'ip'; value: string }[], cn?: string): string {
  const der = handCsr({
    key,
    subject: encodeName(cn ? [{ type: 'CN', value: cn }] : []),
    ...(names.length ? { extensions: [sanExtension(names)] } : { attributes: new Uint8Array([0xa0, 0x00]) }),
  });
  return Buffer.from(der).toString('base64url');
}

/** An order for `names`, validated through http-01 with the test's responder: answers the ready order. */
async function readyOrder(c: AcmeClient, names: string[]) {
  const order = await c.newOrder(names.map((value) => ({ type: 'dns', value })));
  expect(order.status).toBe(201);
  for (const url of order.body.authorizations as string[]) {
    const authz = await c.post(url, '');
    const challenge = authz.body.challenges.find((ch: { type: string }) => ch.type === 'http-01');
    service.http01.answers.set(challenge.token, c.keyAuthorization(challenge.token));
    const answered = await c.post(challenge.url, {});
    expect(answered.status).toBe(200);
    await service.acme.idle();
    const done = await c.poll(url, (body) => body.status !== 'pending');
    expect(done.body.status).toBe('valid');
  }
  const url = order.response.headers.get('location')!;
  const ready = await c.post(url, '');
  expect(ready.body.status).toBe('ready');
  return { url, body: ready.body };
}

function expectProblem(
  answer: { status: number; body: { type: string }; nonce: string | null },
  status: number,
  type: string,
) {
  expect({ status: answer.status, type: answer.body.type }).toEqual({
    status,
    type: `urn:ietf:params:acme:error:${type}`,
  });
  expect(answer.nonce).toMatch(/^[A-Za-z0-9_-]{22}$/);
}

describe('the ACME server (RFC 8555) on the real service', () => {
  beforeAll(async () => {
    service = await startAcmeService();
  }, 180_000);

  afterAll(async () => {
    await service?.close();
  });

  it('serves the directory with absolute URLs from server.publicUrl, a nonce and no other state', async () => {
    const response = await service.app.request(DIRECTORY_URL);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      newNonce: `${PUBLIC_URL}/acme/dev/new-nonce`,
      newAccount: `${PUBLIC_URL}/acme/dev/new-account`,
      newOrder: `${PUBLIC_URL}/acme/dev/new-order`,
      revokeCert: `${PUBLIC_URL}/acme/dev/revoke-cert`,
      keyChange: `${PUBLIC_URL}/acme/dev/key-change`,
      renewalInfo: `${PUBLIC_URL}/acme/dev/renewal-info`,
      meta: {
        externalAccountRequired: false,
        profiles: {
          'web-server':
            'TLS server certificates for example.com, its subdomains and the documentation ranges.',
        },
      },
    });
    expect(response.headers.get('replay-nonce')).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(response.headers.get('link')).toBe(`<${DIRECTORY_URL}>;rel="index"`);
  });

  it('answers newNonce: HEAD 200 and GET 204, each with a new nonce and no-store', async () => {
    const head = await service.app.request(`${PUBLIC_URL}/acme/dev/new-nonce`, { method: 'HEAD' });
    const get = await service.app.request(`${PUBLIC_URL}/acme/dev/new-nonce`);
    expect([head.status, get.status]).toEqual([200, 204]);
    for (const response of [head, get]) {
      expect(response.headers.get('cache-control')).toBe('no-store');
      expect(response.headers.get('replay-nonce')).toMatch(/^[A-Za-z0-9_-]{22}$/);
    }
    expect(head.headers.get('replay-nonce')).not.toBe(get.headers.get('replay-nonce'));
  });

  it('issues through http-01 end to end, and openssl verifies the chain against the dev root', async () => {
    const c = await account();
    const { url, body } = await readyOrder(c, ['www.example.com', 'api.example.com']);
    const certKey = await generateTestKey('ecdsa-p256');
    const finalized = await c.post(body.finalize, {
      csr: csrFor(certKey, [
        { type: 'dns', value: 'www.example.com' },
        { type: 'dns', value: 'api.example.com' },
      ]),
    });
    expect(finalized.status).toBe(200);
    expect(finalized.body.status).toBe('valid');
    expect(finalized.response.headers.get('location')).toBe(url);
    const chain = await c.post(finalized.body.certificate, '');
    expect(chain.status).toBe(200);
    expect(chain.response.headers.get('content-type')).toBe('application/pem-certificate-chain');
    const pems = (chain.body as string).match(
      /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g,
    )!;
    expect(pems).toHaveLength(2);
    if (haveOpenssl) {
      const leaf = path.join(service.dir, 'leaf.pem');
      const untrusted = path.join(service.dir, 'chain.pem');
      const root = path.join(service.dir, 'root.pem');
      writeFileSync(leaf, pems[0]!);
      writeFileSync(untrusted, pems[1]!);
      writeFileSync(root, service.rootPem);
      const verify = spawnSync(
        'openssl',
        ['verify', '-purpose', 'sslserver', '-CAfile', root, '-untrusted', untrusted, leaf],
        {
          encoding: 'utf8',
        },
      );
      expect(`${verify.stdout}${verify.stderr}`).toContain(': OK');
    }
  });

  describe('accounts (RFC 8555 §7.3)', () => {
    it('creates an account once per key: 201 with its URL, then 200 with the same URL', async () => {
      const c = await client();
      const first = await c.newAccount({ termsOfServiceAgreed: true, contact: ['mailto:ops@example.com'] });
      expect(first.status).toBe(201);
      expect(first.body).toMatchObject({
        status: 'valid',
        contact: ['mailto:ops@example.com'],
        termsOfServiceAgreed: true,
      });
      const location = first.response.headers.get('location')!;
      expect(location).toMatch(new RegExp(`^${PUBLIC_URL}/acme/dev/account/[A-Za-z0-9_-]{22}$`));
      const again = await c.newAccount({});
      expect(again.status).toBe(200);
      expect(again.response.headers.get('location')).toBe(location);
      const existing = await c.newAccount({ onlyReturnExisting: true });
      expect([existing.status, existing.response.headers.get('location')]).toEqual([200, location]);
    });

    it('answers onlyReturnExisting for a key without an account with accountDoesNotExist', async () => {
      const c = await client();
      expectProblem(await c.newAccount({ onlyReturnExisting: true }), 400, 'accountDoesNotExist');
    });

    it('reads and updates the account at its URL, refusing contacts that are not one mailto address', async () => {
      const c = await account();
      const read = await c.post(c.kid!, '');
      expect([read.status, read.body.contact]).toEqual([200, ['mailto:ops@example.com']]);
      const updated = await c.post(c.kid!, { contact: ['mailto:pki@example.com'] });
      expect(updated.body.contact).toEqual(['mailto:pki@example.com']);
      expectProblem(await c.post(c.kid!, { contact: ['mailto:not an address'] }), 400, 'invalidContact');
      expectProblem(await c.post(c.kid!, { contact: ['tel:+15555550100'] }), 400, 'unsupportedContact');
      const other = await account();
      expectProblem(await other.post(c.kid!, ''), 403, 'unauthorized');
    });

    it('deactivates an account, after which its key authorises nothing (unauthorized)', async () => {
      const c = await account();
      const deactivated = await c.post(c.kid!, { status: 'deactivated' });
      expect([deactivated.status, deactivated.body.status]).toEqual([200, 'deactivated']);
      expectProblem(await c.newOrder([{ type: 'dns', value: 'www.example.com' }]), 403, 'unauthorized');
      expectProblem(await c.newAccount({}), 403, 'unauthorized');
    });

    it('refuses account keys it does not accept: RSA under 2048 bits with badPublicKey', async () => {
      const { generateKeyPairSync } = await import('node:crypto');
      const pair = generateKeyPairSync('rsa', { modulusLength: 1024 });
      const weak: AcmeKey = {
        privateKey: pair.privateKey,
        jwk: pair.publicKey.export({ format: 'jwk' }),
        alg: 'RS256',
      };
      const c = await client(weak);
      expectProblem(await c.newAccount(), 400, 'badPublicKey');
    });

    it('accepts RSA (certbot) and P-384 account keys', async () => {
      for (const kind of ['rsa-2048', 'ec-p384'] as const) {
        const c = await client(newAcmeKey(kind));
        expect((await c.newAccount()).status).toBe(201);
        expect((await c.newOrder([{ type: 'dns', value: `${kind}.example.com` }])).status).toBe(201);
      }
    });
  });

  describe('orders, authorizations and challenges (RFC 8555 §7.4, §7.5, §8)', () => {
    it('opens one pending authorization per name with the directory challenges, and records it all in the audit log', async () => {
      const c = await account();
      const order = await c.newOrder([
        { type: 'dns', value: 'WWW.Example.com' },
        { type: 'dns', value: 'www.example.com' },
        { type: 'dns', value: 'shop.example.com' },
      ]);
      expect(order.status).toBe(201);
      expect(order.body).toMatchObject({
        status: 'pending',
        identifiers: [
          { type: 'dns', value: 'www.example.com' },
          { type: 'dns', value: 'shop.example.com' },
        ],
      });
      expect(order.body.authorizations).toHaveLength(2);
      expect(order.body.finalize).toBe(`${order.response.headers.get('location')}/finalize`);
      const authz = await c.post(order.body.authorizations[0], '');
      expect(authz.body).toMatchObject({
        identifier: { type: 'dns', value: 'www.example.com' },
        status: 'pending',
      });
      expect(authz.body.challenges.map((ch: { type: string }) => ch.type)).toEqual([
        'http-01',
        'dns-01',
        'tls-alpn-01',
      ]);
      for (const challenge of authz.body.challenges) {
        expect(challenge.status).toBe('pending');
        expect(challenge.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      }
      const accountId = c.kid!.split('/').pop();
      const { items } = await service.runtime.repositories.audit.list({ actor: `acme:dev:${accountId}` });
      expect(items.map((e) => e.action).sort()).toEqual(['acme.account.create', 'acme.order.create']);
    });

    it('issues a wildcard only through dns-01, validated from the TXT record', async () => {
      const c = await account();
      const order = await c.newOrder([{ type: 'dns', value: '*.app.example.com' }]);
      expect(order.status).toBe(201);
      const authz = await c.post(order.body.authorizations[0], '');
      expect(authz.body).toMatchObject({
        identifier: { type: 'dns', value: 'app.example.com' },
        wildcard: true,
      });
      expect(authz.body.challenges.map((ch: { type: string }) => ch.type)).toEqual(['dns-01']);
      const challenge = authz.body.challenges[0];
      service.txt.set('_acme-challenge.app.example.com', ['unrelated', c.dnsValue(challenge.token)]);
      await c.post(challenge.url, {});
      await service.acme.idle();
      expect((await c.post(order.body.authorizations[0], '')).body.status).toBe('valid');
      const certKey = await generateTestKey('ecdsa-p256');
      const finalized = await c.post(order.body.finalize, {
        csr: csrFor(certKey, [{ type: 'dns', value: '*.app.example.com' }]),
      });
      expect([finalized.status, finalized.body.status]).toEqual([200, 'valid']);
    });

    it('validates tls-alpn-01 over a real TLS connection to the name', async () => {
      const c = await account();
      const order = await c.newOrder([{ type: 'dns', value: 'alpn.example.com' }]);
      const authz = await c.post(order.body.authorizations[0], '');
      const challenge = authz.body.challenges.find((ch: { type: string }) => ch.type === 'tls-alpn-01');
      service.tlsAlpn.set(
        'alpn.example.com',
        await tlsAlpnCertificate(
          { type: 'dns', value: 'alpn.example.com' },
          c.keyAuthorization(challenge.token),
        ),
      );
      await c.post(challenge.url, {});
      await service.acme.idle();
      const after = await c.post(order.body.authorizations[0], '');
      expect(after.body.status).toBe('valid');
      expect(after.body.challenges).toEqual([
        expect.objectContaining({ type: 'tls-alpn-01', status: 'valid' }),
      ]);
      expect(service.tlsAlpn.servernames.at(-1)).toBe('alpn.example.com');
    });

    it('offers IP identifiers http-01 and tls-alpn-01 only (RFC 8738 §7)', async () => {
      const c = await account();
      const order = await c.newOrder([{ type: 'ip', value: '192.0.2.10' }]);
      expect(order.status).toBe(201);
      const authz = await c.post(order.body.authorizations[0], '');
      expect(authz.body.identifier).toEqual({ type: 'ip', value: '192.0.2.10' });
      expect(authz.body.challenges.map((ch: { type: string }) => ch.type)).toEqual([
        'http-01',
        'tls-alpn-01',
      ]);
    });

    it('reuses a valid authorization of the account for the same name: the next order is ready at once', async () => {
      const c = await account();
      const first = await readyOrder(c, ['reuse.example.com']);
      const second = await c.newOrder([{ type: 'dns', value: 'reuse.example.com' }]);
      expect(second.body.status).toBe('ready');
      expect(second.body.authorizations).toEqual(first.body.authorizations);
      const stranger = await account();
      const theirs = await stranger.newOrder([{ type: 'dns', value: 'reuse.example.com' }]);
      expect(theirs.body.status).toBe('pending');
    });

    it('makes the challenge, its authorization and the order invalid when the response is wrong', async () => {
      const c = await account();
      const order = await c.newOrder([{ type: 'dns', value: 'wrong.example.com' }]);
      const authz = await c.post(order.body.authorizations[0], '');
      const challenge = authz.body.challenges.find((ch: { type: string }) => ch.type === 'http-01');
      service.http01.answers.set(challenge.token, 'not the key authorization');
      const answered = await c.post(challenge.url, {});
      expect(answered.body.status).toBe('processing');
      expect(answered.response.headers.get('retry-after')).toBe('1');
      expect(answered.response.headers.get('link')).toContain(`<${order.body.authorizations[0]}>;rel="up"`);
      await service.acme.idle();
      const after = await c.post(challenge.url, '');
      expect(after.body).toMatchObject({
        status: 'invalid',
        error: { type: 'urn:ietf:params:acme:error:incorrectResponse' },
      });
      expect((await c.post(order.body.authorizations[0], '')).body.status).toBe('invalid');
      const orderNow = await c.post(order.response.headers.get('location')!, '');
      expect(orderNow.body.status).toBe('invalid');
    });

    it('issues for a name given only as the CSR common name (RFC 8555 §7.4), with the name as a SAN', async () => {
      const c = await account();
      const { body } = await readyOrder(c, ['cn-only.example.com']);
      const certKey = await generateTestKey('ecdsa-p256');
      const finalized = await c.post(body.finalize, { csr: csrFor(certKey, [], 'cn-only.example.com') });
      expect(finalized.body, JSON.stringify(finalized.body)).toMatchObject({ status: 'valid' });
      const chain = await c.post(finalized.body.certificate, '');
      const { X509Certificate } = await import('node:crypto');
      expect(new X509Certificate(chain.body).subjectAltName).toBe('DNS:cn-only.example.com');
    });

    it('serves a certificate only to the account that ordered it, and finalizes an order once', async () => {
      const c = await account();
      const { body } = await readyOrder(c, ['once.example.com']);
      const certKey = await generateTestKey('ecdsa-p256');
      const csr = csrFor(certKey, [{ type: 'dns', value: 'once.example.com' }]);
      const finalized = await c.post(body.finalize, { csr });
      expect(finalized.body.status).toBe('valid');
      expectProblem(await c.post(body.finalize, { csr }), 403, 'orderNotReady');
      const stranger = await account();
      expectProblem(await stranger.post(finalized.body.certificate, ''), 403, 'unauthorized');
      expectProblem(
        await stranger.post(finalized.response.headers.get('location')!, ''),
        403,
        'unauthorized',
      );
    });
  });

  describe('revokeCert (RFC 8555 §7.6)', () => {
    async function issued(c: AcmeClient, name: string) {
      const { body } = await readyOrder(c, [name]);
      const certKey = await generateTestKey('ecdsa-p256');
      const finalized = await c.post(body.finalize, { csr: csrFor(certKey, [{ type: 'dns', value: name }]) });
      const chain: string = (await c.post(finalized.body.certificate, '')).body;
      const leafPem = chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/)![0];
      const { X509Certificate } = await import('node:crypto');
      const leaf = new X509Certificate(leafPem);
      return { certKey, der: leaf.raw.toString('base64url'), serial: leaf.serialNumber.toLowerCase() };
    }

    it('revokes for the account that ordered the certificate, then answers alreadyRevoked', async () => {
      const c = await account();
      const cert = await issued(c, 'revoke-me.example.com');
      const revoked = await c.post(c.directory.revokeCert!, { certificate: cert.der, reason: 4 });
      expect(revoked.status).toBe(200);
      const record = await service.runtime.repositories.certificates.findBySerial(cert.serial);
      expect(record).toMatchObject({ status: 'revoked', revocationReason: 'superseded' });
      expectProblem(await c.post(c.directory.revokeCert!, { certificate: cert.der }), 400, 'alreadyRevoked');
    });

    it('revokes with a JWS signed by the certificate key itself (keyCompromise)', async () => {
      const c = await account();
      const cert = await issued(c, 'stolen.example.com');
      const certJwk = cert.certKey.privateKey.export({ format: 'jwk' });
      const key: AcmeKey = {
        privateKey: cert.certKey.privateKey,
        jwk: { kty: certJwk.kty, crv: certJwk.crv, x: certJwk.x, y: certJwk.y },
        alg: 'ES256',
      };
      const revoked = await c.post(c.directory.revokeCert!, { certificate: cert.der, reason: 1 }, { key });
      expect(revoked.status).toBe(200);
      expect(await service.runtime.repositories.certificates.findBySerial(cert.serial)).toMatchObject({
        revocationReason: 'keyCompromise',
      });
    });

    it('refuses an account without authorizations for the names, and accepts one that holds them', async () => {
      const c = await account();
      const cert = await issued(c, 'shared.example.com');
      const stranger = await account();
      expectProblem(
        await stranger.post(c.directory.revokeCert!, { certificate: cert.der }),
        403,
        'unauthorized',
      );
      await readyOrder(stranger, ['shared.example.com']);
      expect((await stranger.post(c.directory.revokeCert!, { certificate: cert.der })).status).toBe(200);
    });

    it('refuses certificateHold and unknown reasons with badRevocationReason, and a foreign certificate', async () => {
      const c = await account();
      const cert = await issued(c, 'hold.example.com');
      expectProblem(
        await c.post(c.directory.revokeCert!, { certificate: cert.der, reason: 6 }),
        400,
        'badRevocationReason',
      );
      expectProblem(
        await c.post(c.directory.revokeCert!, { certificate: cert.der, reason: 'x' }),
        400,
        'badRevocationReason',
      );
      const foreign = Buffer.from(cert.der, 'base64url');
      foreign[foreign.length - 5] = foreign[foreign.length - 5]! ^ 1;
      expectProblem(
        await c.post(c.directory.revokeCert!, { certificate: foreign.toString('base64url') }),
        404,
        'malformed',
      );
    });
  });

  describe('errors: every one an ACME problem with a fresh nonce, never a 500', () => {
    it('refuses a replayed nonce with badNonce, handing a fresh one that works', async () => {
      const c = await account();
      const nonce = await c.freshNonce();
      const first = await c.post(c.kid!, '', { nonce });
      expect(first.status).toBe(200);
      const replay = await c.post(c.kid!, '', { nonce });
      expectProblem(replay, 400, 'badNonce');
      expect(replay.nonce).not.toBe(nonce);
      expect((await c.post(c.kid!, '', { nonce: replay.nonce! })).status).toBe(200);
      expectProblem(await c.post(c.kid!, '', { nonce: 'AAAAAAAAAAAAAAAAAAAAAA' }), 400, 'badNonce');
    });

    it('refuses a JWS whose url is not the URL requested with unauthorized', async () => {
      const c = await account();
      expectProblem(await c.post(c.kid!, '', { signedUrl: c.directory.newOrder! }), 403, 'unauthorized');
      expectProblem(
        await c.post(c.kid!, '', { signedUrl: c.kid!.replace('127.0.0.1', 'localhost') }),
        403,
        'unauthorized',
      );
    });

    it('refuses a header with both jwk and kid, and the wrong one of them, with malformed', async () => {
      const c = await account();
      expectProblem(await c.post(c.kid!, '', { both: true }), 400, 'malformed');
      expectProblem(await c.post(c.kid!, '', { useJwk: true }), 400, 'malformed');
      const fresh = await client();
      fresh.kid = c.kid;
      expectProblem(await fresh.post(c.directory.newAccount!, {}, {}), 400, 'malformed');
    });

    it('refuses a kid naming no account with accountDoesNotExist, and a signature by another key with malformed', async () => {
      const c = await account();
      const ghost = await client();
      ghost.kid = `${PUBLIC_URL}/acme/dev/account/AAAAAAAAAAAAAAAAAAAAAA`;
      expectProblem(
        await ghost.newOrder([{ type: 'dns', value: 'www.example.com' }]),
        400,
        'accountDoesNotExist',
      );
      ghost.kid = `${PUBLIC_URL}/acme/other/account/x`;
      expectProblem(
        await ghost.newOrder([{ type: 'dns', value: 'www.example.com' }]),
        400,
        'accountDoesNotExist',
      );
      const impostor = await client();
      impostor.kid = c.kid;
      expectProblem(await impostor.newOrder([{ type: 'dns', value: 'www.example.com' }]), 400, 'malformed');
    });

    it('refuses alg none, MAC algorithms and others with badSignatureAlgorithm listing the accepted ones', async () => {
      const c = await account();
      for (const alg of ['none', 'HS256', 'EdDSA', 'ES512']) {
        const body = JSON.parse(await c.sign(c.kid!, ''));
        const header = JSON.parse(Buffer.from(body.protected, 'base64url').toString());
        header.alg = alg;
        body.protected = Buffer.from(JSON.stringify(header)).toString('base64url');
        if (alg === 'none') body.signature = '';
        const answer = await c.postRaw(c.kid!, JSON.stringify(body));
        expectProblem(answer, 400, 'badSignatureAlgorithm');
        expect(answer.body.algorithms).toEqual(['RS256', 'ES256', 'ES384']);
      }
    });

    it('refuses to finalize an order before its authorizations are valid with orderNotReady', async () => {
      const c = await account();
      const order = await c.newOrder([{ type: 'dns', value: 'early.example.com' }]);
      const certKey = await generateTestKey('ecdsa-p256');
      const answer = await c.post(order.body.finalize, {
        csr: csrFor(certKey, [{ type: 'dns', value: 'early.example.com' }]),
      });
      expectProblem(answer, 403, 'orderNotReady');
    });

    it('refuses a CSR with a name beyond the order, or the account key, with badCSR and keeps the order ready', async () => {
      const c = await account();
      const { url, body } = await readyOrder(c, ['exact.example.com']);
      const certKey = await generateTestKey('ecdsa-p256');
      const extra = await c.post(body.finalize, {
        csr: csrFor(certKey, [
          { type: 'dns', value: 'exact.example.com' },
          { type: 'dns', value: 'extra.example.com' },
        ]),
      });
      expectProblem(extra, 400, 'badCSR');
      expect(extra.body.detail).toContain('dns:extra.example.com');
      const missing = await c.post(body.finalize, {
        csr: csrFor(certKey, [{ type: 'dns', value: 'other.example.com' }]),
      });
      expectProblem(missing, 400, 'badCSR');
      const { createPrivateKey, createPublicKey } = await import('node:crypto');
      const accountKey: TestKey = {
        name: 'ecdsa-p256',
        pair: undefined as never,
        privateKey: createPrivateKey(c.key.privateKey.export({ format: 'pem', type: 'pkcs8' })),
        spki: new Uint8Array(createPublicKey(c.key.privateKey).export({ format: 'der', type: 'spki' })),
      };
      expectProblem(
        await c.post(body.finalize, {
          csr: csrFor(accountKey, [{ type: 'dns', value: 'exact.example.com' }]),
        }),
        400,
        'badCSR',
      );
      expectProblem(await c.post(body.finalize, { csr: 'AAAA' }), 400, 'badCSR');
      expect((await c.post(url, '')).body.status).toBe('ready');
    });

    it('refuses names the policy refuses with rejectedIdentifier, one subproblem per name saying why', async () => {
      const c = await account();
      const answer = await c.newOrder([
        { type: 'dns', value: 'www.example.com' },
        { type: 'dns', value: 'internal.example.com' },
        { type: 'dns', value: 'www.example.org' },
        { type: 'ip', value: '192.0.2.255' },
      ]);
      expectProblem(answer, 400, 'rejectedIdentifier');
      expect(answer.body.subproblems).toEqual([
        {
          type: 'urn:ietf:params:acme:error:rejectedIdentifier',
          identifier: { type: 'dns', value: 'internal.example.com' },
          detail: expect.stringContaining('policy.san_denied'),
        },
        {
          type: 'urn:ietf:params:acme:error:rejectedIdentifier',
          identifier: { type: 'dns', value: 'www.example.org' },
          detail: expect.stringContaining('policy.dns_not_allowed'),
        },
        {
          type: 'urn:ietf:params:acme:error:rejectedIdentifier',
          identifier: { type: 'ip', value: '192.0.2.255' },
          detail: expect.stringContaining('policy.san_denied'),
        },
      ]);
      expect(answer.body.subproblems[1].detail).toContain('www.example.org');
    });

    it('refuses identifiers that are not names, and types it does not issue for', async () => {
      const c = await account();
      const bad = await c.newOrder([
        { type: 'dns', value: 'exa mple.com' },
        { type: 'ip', value: '999.1.1.1' },
      ]);
      expectProblem(bad, 400, 'rejectedIdentifier');
      expect(bad.body.subproblems).toHaveLength(2);
      const email = await c.newOrder([{ type: 'email', value: 'ops@example.com' }]);
      expectProblem(email, 400, 'unsupportedIdentifier');
      expect(email.body.subproblems[0].detail).toContain('email');
      expectProblem(await c.newOrder([]), 400, 'malformed');
      expectProblem(
        await c.post(c.directory.newOrder!, {
          identifiers: [{ type: 'dns', value: 'www.example.com' }],
          notAfter: '2030-01-01T00:00:00Z',
        }),
        400,
        'malformed',
      );
    });

    it('answers the HTTP-level mistakes as ACME problems: media type 415, GET 405, unknown 404, body too large 413', async () => {
      const c = await account();
      const signed = await c.sign(c.kid!, '');
      expectProblem(await c.postRaw(c.kid!, signed, 'application/json'), 415, 'malformed');
      const get = await service.app.request(c.kid!);
      expect([get.status, get.headers.get('allow')]).toEqual([405, 'POST']);
      expect(((await get.json()) as { type: string }).type).toBe('urn:ietf:params:acme:error:malformed');
      for (const url of [
        `${PUBLIC_URL}/acme/dev/nothing`,
        `${PUBLIC_URL}/acme/nope/directory`,
        `${PUBLIC_URL}/acme/dev/order/a/b/c`,
      ]) {
        const response = await service.app.request(url);
        expect(response.status).toBe(404);
        expect(response.headers.get('content-type')).toBe('application/problem+json');
        expect(response.headers.get('replay-nonce')).toMatch(/^[A-Za-z0-9_-]{22}$/);
      }
      const huge = await c.postRaw(
        c.directory.newOrder!,
        JSON.stringify({ protected: 'a'.repeat(20_000), payload: '', signature: '' }),
      );
      expectProblem(huge, 413, 'malformed');
      expect(huge.response.headers.get('link')).toBe(`<${DIRECTORY_URL}>;rel="index"`);
    });

    it.each([
      ['not JSON', 'nonsense'],
      ['a JSON array', '[]'],
      ['the general serialization', '{"signatures":[],"payload":""}'],
      ['an unprotected header', '{"protected":"e30","payload":"","signature":"","header":{}}'],
      ['a protected header that is not JSON', '{"protected":"!!!","payload":"","signature":""}'],
      [
        'a protected header that is a string',
        `{"protected":"${Buffer.from('"x"').toString('base64url')}","payload":"","signature":""}`,
      ],
      ['parts that are not strings', '{"protected":1,"payload":2,"signature":3}'],
    ])('answers %s with malformed', async (_name, body) => {
      const c = await client();
      expectProblem(await c.postRaw(c.directory.newAccount!, body), 400, 'malformed');
    });

    it('limits new accounts per client address with rateLimited and Retry-After', async () => {
      const address = nextAddress();
      const statuses: number[] = [];
      let last: Awaited<ReturnType<AcmeClient['newAccount']>> | undefined;
      for (let i = 0; i < 7; i++) {
        const c = await new AcmeClient(service.fetchFrom(address), DIRECTORY_URL).init();
        last = await c.newAccount();
        statuses.push(last.status);
      }
      expect(statuses).toEqual([201, 201, 201, 201, 201, 429, 429]);
      expectProblem(last!, 429, 'rateLimited');
      expect(Number(last!.response.headers.get('retry-after'))).toBeGreaterThan(0);
    });

    it('counts failed signatures against the address, then refuses it with rateLimited before any work', async () => {
      const address = nextAddress();
      const c = await new AcmeClient(service.fetchFrom(address), DIRECTORY_URL).init();
      c.kid = `${PUBLIC_URL}/acme/dev/account/AAAAAAAAAAAAAAAAAAAAAA`;
      const statuses = new Set<number>();
      for (let i = 0; i < 62; i++) statuses.add((await c.post(c.kid, '')).status);
      expect([...statuses]).toEqual([400, 429]);
    });
  });

  describe('state lives in the database', () => {
    it('accepts a nonce issued by another node, once', async () => {
      const other = service.otherNode();
      const c = await account();
      const response = await other.app.request(`${PUBLIC_URL}/acme/dev/new-nonce`, { method: 'HEAD' });
      const nonce = response.headers.get('replay-nonce')!;
      expect((await c.post(c.kid!, '', { nonce })).status).toBe(200);
      const elsewhere = new AcmeClient(
        async (url, init) => other.app.request(url, init),
        DIRECTORY_URL,
        c.key,
      );
      await elsewhere.init();
      elsewhere.kid = c.kid;
      expectProblem(await elsewhere.post(c.kid!, '', { nonce }), 400, 'badNonce');
    });

    it('answers an order created on one node from another node (and after a restart)', async () => {
      const c = await account();
      const order = await c.newOrder([{ type: 'dns', value: 'node.example.com' }]);
      const other = service.otherNode();
      const there = new AcmeClient(async (url, init) => other.app.request(url, init), DIRECTORY_URL, c.key);
      await there.init();
      there.kid = c.kid;
      const read = await there.post(order.response.headers.get('location')!, '');
      expect([read.status, read.body.identifiers]).toEqual([
        200,
        [{ type: 'dns', value: 'node.example.com' }],
      ]);
    });

    it('refuses a nonce past acme.nonceLifetime', async () => {
      const c = await account();
      const nonce = await c.freshNonce();
      const later = fixedClock(new Date(Date.now() + 11 * 60_000));
      const other = service.otherNode({ clock: later });
      const there = new AcmeClient(async (url, init) => other.app.request(url, init), DIRECTORY_URL, c.key);
      await there.init();
      there.kid = c.kid;
      expectProblem(await there.post(c.kid!, '', { nonce }), 400, 'badNonce');
    });

    it('expires orders and authorizations on schedule: invalid when read, written by the sweep, audited', async () => {
      const c = await account();
      const order = await c.newOrder([{ type: 'dns', value: 'expiring.example.com' }]);
      const later = fixedClock(new Date(Date.now() + 8 * 86_400_000));
      const other = service.otherNode({ clock: later });
      const there = new AcmeClient(async (url, init) => other.app.request(url, init), DIRECTORY_URL, c.key);
      await there.init();
      there.kid = c.kid;
      const read = await there.post(order.response.headers.get('location')!, '');
      expect(read.body.status).toBe('invalid');
      expect((await there.post(order.body.authorizations[0], '')).body.status).toBe('expired');
      await other.acme.sweep();
      await other.acme.idle();
      const stored = await service.runtime.database.db.query.acmeOrders.findFirst({
        where: (o, { eq }) => eq(o.id, order.response.headers.get('location')!.split('/').pop()!),
      });
      expect(stored?.status).toBe('invalid');
      const { items } = await service.runtime.repositories.audit.list({ action: 'acme.expire' });
      expect(items.length).toBeGreaterThan(0);
    });

    it('takes up a validation that another node left processing once its lease has passed', async () => {
      const c = await account();
      const order = await c.newOrder([{ type: 'dns', value: 'abandoned.example.com' }]);
      const authz = await c.post(order.body.authorizations[0], '');
      const challenge = authz.body.challenges.find((ch: { type: string }) => ch.type === 'http-01');
      service.http01.answers.set(challenge.token, c.keyAuthorization(challenge.token));
      const repository = (await import('../../src/db/acme.repository.ts')).createAcmeRepository({
        db: service.runtime.database.db,
      });
      const id = challenge.url.split('/').pop();
      // As if a node had started it and died: processing, with a lease already over.
      expect(await repository.startChallenge(id, new Date(Date.now() - 1000))).toBe(true);
      const other = service.otherNode();
      await other.acme.sweep();
      await other.acme.idle();
      expect((await c.post(challenge.url, '')).body.status).toBe('valid');
    });
  });
});
