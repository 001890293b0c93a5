import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AlternateChain, parseAlternateChain } from '../../src/acme/chains.ts';
import { encodeName } from '../../src/x509/names.ts';
import { AcmeClient, type AcmeKey, eabBinding, newAcmeKey, signedJws } from '../helpers/acme-client.ts';
import { hasTool } from '../helpers/tools.ts';
import { generateTestKey, handCsr, sanExtension } from '../x509/fixtures.ts';
import { type AcmeService, crossSign, PUBLIC_URL, shortLivedPolicy, startAcmeService } from './helpers.ts';

/**
 * ACME part 2 (issue #31) through the real service, with hand-made JWS requests (the Debian
 * clients send neither profiles, ARI nor keyChange): external account binding (RFC 8555 §7.3.4)
 * with keys sealed under the partition, profiles (draft-ietf-acme-profiles), renewal information
 * (RFC 9773), keyChange (§7.3.5), authorization deactivation (§7.5.2) and the orders list
 * (§7.1.2.1).
 */

let service: AcmeService;
const alternateChains: AlternateChain[] = [];
let addressCounter = 0;
const nextAddress = () => `203.0.113.${++addressCounter}`;
const DEV = `${PUBLIC_URL}/acme/dev/directory`;
const PRIVATE = `${PUBLIC_URL}/acme/private/directory`;
const ADMIN_KEY = () => service.adminKey;

async function client(directory = DEV, key?: AcmeKey): Promise<AcmeClient> {
  return new AcmeClient(service.fetchFrom(nextAddress()), directory, key).init();
}

async function account(directory = DEV): Promise<AcmeClient> {
  const c = await client(directory);
  expect((await c.newAccount({ termsOfServiceAgreed: true })).status).toBe(201);
  return c;
}

async function createEab(body: Record<string, unknown>) {
  const response = await service.app.request(`${PUBLIC_URL}/v1/acme/eab-keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_KEY()}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return {
    status: response.status,
    body: (await response.json()) as Record<string, string> & { type?: string },
  };
}

async function readyOrder(c: AcmeClient, names: string[], extra: Record<string, unknown> = {}) {
  const order = await c.post(c.directory.newOrder!, {
    identifiers: names.map((value) => ({ type: 'dns', value })),
    ...extra,
  });
  expect(order.status, JSON.stringify(order.body)).toBe(201);
  for (const url of order.body.authorizations as string[]) {
    const authz = await c.post(url, '');
    if (authz.body.status === 'valid') continue;
    const challenge = authz.body.challenges.find((ch: { type: string }) => ch.type === 'http-01');
    service.http01.answers.set(challenge.token, c.keyAuthorization(challenge.token));
    await c.post(challenge.url, {});
    await service.acme.idle();
    expect((await c.poll(url, (b) => b.status !== 'pending')).body.status).toBe('valid');
  }
  return { url: order.response.headers.get('location')!, body: order.body };
}

async function issue(c: AcmeClient, names: string[], extra: Record<string, unknown> = {}) {
  const { url, body } = await readyOrder(c, names, extra);
  const key = await generateTestKey('ecdsa-p256');
  const csr = Buffer.from(
    handCsr({
      key,
      subject: encodeName([]),
      extensions: [sanExtension(names.map((value) => ({ type: 'dns' as const, value })))],
    }),
  ).toString('base64url');
  const finalized = await c.post(body.finalize, { csr });
  expect(finalized.status, JSON.stringify(finalized.body)).toBe(200);
  const chain = await c.post(finalized.body.certificate, '');
  const leaf = new X509Certificate(
    chain.body.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/)![0],
  );
  return { url, order: finalized.body, leaf, chain };
}

/** RFC 9773 §4.1: base64url(AKI keyIdentifier) "." base64url(serial octets). */
function certIdOf(leaf: X509Certificate): string {
  const der = leaf.raw;
  // The AKI extension's keyIdentifier: find OID 2.5.29.35 and read the [0] octets after it.
  const oid = Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x23]);
  const at = der.indexOf(oid);
  const tag = der.indexOf(0x80, at + oid.length);
  const length = der[tag + 1]!;
  const keyIdentifier = der.subarray(tag + 2, tag + 2 + length);
  const serial = Buffer.from(
    leaf.serialNumber.length % 2 ? `0${leaf.serialNumber}` : leaf.serialNumber,
    'hex',
  );
  const octets = serial[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), serial]) : serial;
  return `${keyIdentifier.toString('base64url')}.${octets.toString('base64url')}`;
}

describe('ACME part 2 on the real service', () => {
  beforeAll(async () => {
    service = await startAcmeService({
      policies: { 'short-lived': shortLivedPolicy() },
      directories: [
        {
          name: 'dev',
          policy: 'web-server',
          profiles: ['short-lived'],
          challenges: ['http-01', 'dns-01'],
          eab: 'optional',
        },
        {
          name: 'private',
          policy: 'web-server',
          profiles: ['short-lived'],
          challenges: ['http-01'],
          eab: 'required',
        },
      ],
      ordersPageSize: 2,
      caaIdentities: ['ca.example.net'],
      alternateChains,
    });
  }, 180_000);

  afterAll(async () => {
    await service?.close();
  });

  describe('external account binding (RFC 8555 §7.3.4)', () => {
    it('advertises externalAccountRequired and refuses a newAccount without a binding', async () => {
      const c = await client(PRIVATE);
      expect(c.directory.meta).toMatchObject({ externalAccountRequired: true });
      const answer = await c.newAccount({ termsOfServiceAgreed: true });
      expect([answer.status, answer.body.type]).toEqual([
        403,
        'urn:ietf:params:acme:error:externalAccountRequired',
      ]);
    });

    it('makes HS256 keys for admins only, shown once, sealed in the database', async () => {
      const created = await createEab({ directory: 'private', policies: ['short-lived'], expiresIn: 'P30D' });
      expect(created.status).toBe(201);
      expect(Buffer.from(created.body.hmacKey!, 'base64url')).toHaveLength(32);
      expect(created.body).toMatchObject({ directory: 'private', policies: ['short-lived'] });
      const row = await service.runtime.database.db.query.acmeEabKeys.findFirst({
        where: (k, { eq }) => eq(k.id, created.body.kid!),
      });
      expect(Buffer.from(row!.sealed).includes(Buffer.from(created.body.hmacKey!, 'base64url'))).toBe(false);
      const refused = await service.app.request(`${PUBLIC_URL}/v1/acme/eab-keys`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ directory: 'private', policies: ['web-server'] }),
      });
      expect(refused.status).toBe(401);
      const unknownPolicy = await createEab({ directory: 'private', policies: ['client-mtls'] });
      expect([unknownPolicy.status, unknownPolicy.body.type]).toEqual([
        400,
        'https://signet.dev/problems/acme.eab_policy_not_offered',
      ]);
    });

    it('binds an account to the key once; the account orders only under the key policies', async () => {
      const { body: eab } = await createEab({ directory: 'private', policies: ['short-lived'] });
      const c = await client(PRIVATE);
      const binding = eabBinding(c.key.jwk, eab.kid!, eab.hmacKey!, c.directory.newAccount!);
      const created = await c.newAccount({ termsOfServiceAgreed: true, externalAccountBinding: binding });
      expect(created.status).toBe(201);
      // The key's only policy is not the directory default: orders default to it.
      const { leaf } = await issue(c, ['eab-bound.example.com']);
      const days = (Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)) / 86_400_000;
      expect(Math.round(days)).toBe(7);
      const web = await c.post(c.directory.newOrder!, {
        identifiers: [{ type: 'dns', value: 'eab-other.example.com' }],
        profile: 'web-server',
      });
      expect([web.status, web.body.type]).toEqual([403, 'urn:ietf:params:acme:error:unauthorized']);

      const second = await client(PRIVATE);
      const reused = await second.newAccount({
        termsOfServiceAgreed: true,
        externalAccountBinding: eabBinding(
          second.key.jwk,
          eab.kid!,
          eab.hmacKey!,
          second.directory.newAccount!,
        ),
      });
      expect([reused.status, reused.body.type]).toEqual([403, 'urn:ietf:params:acme:error:unauthorized']);
      expect(reused.body.detail).toMatch(/already been used/);
    });

    it('refuses an unknown key, a wrong MAC, an expired key and a binding over another key with unauthorized or malformed', async () => {
      const c = await client(PRIVATE);
      const url = c.directory.newAccount!;
      const unknown = await c.newAccount({
        externalAccountBinding: eabBinding(
          c.key.jwk,
          'no-such-kid',
          Buffer.alloc(32).toString('base64url'),
          url,
        ),
      });
      expect([unknown.status, unknown.body.type]).toEqual([403, 'urn:ietf:params:acme:error:unauthorized']);

      const { body: eab } = await createEab({ directory: 'private', policies: ['web-server'] });
      const wrongMac = await c.newAccount({
        externalAccountBinding: eabBinding(
          c.key.jwk,
          eab.kid!,
          Buffer.alloc(32, 1).toString('base64url'),
          url,
        ),
      });
      expect([wrongMac.status, wrongMac.body.type]).toEqual([403, 'urn:ietf:params:acme:error:unauthorized']);

      const otherKey = await c.newAccount({
        externalAccountBinding: eabBinding(newAcmeKey().jwk, eab.kid!, eab.hmacKey!, url),
      });
      expect([otherKey.status, otherKey.body.type]).toEqual([400, 'urn:ietf:params:acme:error:malformed']);

      const withNonce = await c.newAccount({
        externalAccountBinding: eabBinding(c.key.jwk, eab.kid!, eab.hmacKey!, url, { nonce: 'x' }),
      });
      expect(withNonce.status).toBe(400);

      // The key of another directory is unknown here.
      const { body: devKey } = await createEab({ directory: 'dev', policies: ['web-server'] });
      const foreign = await c.newAccount({
        externalAccountBinding: eabBinding(c.key.jwk, devKey.kid!, devKey.hmacKey!, url),
      });
      expect(foreign.status).toBe(403);

      // Expiry: a key made with a 1-second lifetime, used after it.
      const { body: brief } = await createEab({
        directory: 'private',
        policies: ['web-server'],
        expiresIn: 'PT1S',
      });
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const expired = await c.newAccount({
        externalAccountBinding: eabBinding(c.key.jwk, brief.kid!, brief.hmacKey!, url),
      });
      expect([expired.status, expired.body.detail]).toEqual([403, 'this external account key has expired']);

      // The key that failed above still binds (a failed attempt does not consume it).
      const good = await c.newAccount({
        externalAccountBinding: eabBinding(c.key.jwk, eab.kid!, eab.hmacKey!, url),
      });
      expect(good.status).toBe(201);
    });

    it('seals under an Ed25519 key of the partition that never leaves it and PKCS#11 clients never see', async () => {
      const partition = service.runtime.partitions.get('issuing')!;
      const key = await partition.findKey({ label: 'acme-eab' });
      expect(key).toMatchObject({ algorithm: 'ed25519', purposes: ['other'], extractable: false });
      await expect(partition.exportKey({ label: 'acme-eab' })).rejects.toMatchObject({
        code: 'hsm.key_unextractable',
      });
      const { isExposed } = await import('../../src/hsm/p11/objects.ts');
      expect(isExposed(key!)).toBe(false);
    });

    it('answers 503 acme.eab_unavailable when the partition cannot seal, and stores nothing', async () => {
      const node = service.otherNode({
        eabSealer: {
          seal: async () => {
            throw new Error('partition unavailable');
          },
          open: async () => {
            throw new Error('partition unavailable');
          },
        },
      });
      const count = async () => (await service.runtime.database.db.query.acmeEabKeys.findMany()).length;
      const before = await count();
      const response = await node.app.request(`${PUBLIC_URL}/v1/acme/eab-keys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_KEY()}`, 'content-type': 'application/json' },
        body: JSON.stringify({ directory: 'dev', policies: ['web-server'] }),
      });
      expect(response.status).toBe(503);
      expect(((await response.json()) as { code: string }).code).toBe('acme.eab_unavailable');
      expect(await count()).toBe(before);
    });

    it('refuses a sealed key altered in the database (it no longer opens)', async () => {
      const { body: eab } = await createEab({ directory: 'private', policies: ['web-server'] });
      const { acmeEabKeys } = await import('../../src/db/schema/index.ts');
      const { eq } = await import('drizzle-orm');
      const db = service.runtime.database.db;
      const row = await db.query.acmeEabKeys.findFirst({ where: (k, { eq: e }) => e(k.id, eab.kid!) });
      const sealed = Buffer.from(row!.sealed);
      sealed[sealed.length - 1]! ^= 1;
      await db
        .update(acmeEabKeys)
        .set({ sealed: new Uint8Array(sealed) })
        .where(eq(acmeEabKeys.id, eab.kid!));
      const c = await client(PRIVATE);
      const answer = await c.newAccount({
        externalAccountBinding: eabBinding(c.key.jwk, eab.kid!, eab.hmacKey!, c.directory.newAccount!),
      });
      expect(answer.status).toBe(503);
      expect(answer.body.type).toBe('urn:ietf:params:acme:error:serverInternal');
    });
  });

  describe('profiles (draft-ietf-acme-profiles)', () => {
    it('advertises each profile with its policy description', async () => {
      const c = await client();
      expect(c.directory.meta).toEqual({
        externalAccountRequired: false,
        profiles: {
          'web-server':
            'TLS server certificates for example.com, its subdomains and the documentation ranges.',
          'short-lived': 'Seven-day TLS server certificates.',
        },
      });
    });

    it('issues under the profile asked for, and the default policy without one', async () => {
      const c = await account();
      const short = await issue(c, ['profile-short.example.com'], { profile: 'short-lived' });
      expect(short.order.profile).toBe('short-lived');
      expect(
        Math.round((Date.parse(short.leaf.validTo) - Date.parse(short.leaf.validFrom)) / 86_400_000),
      ).toBe(7);
      const plain = await issue(c, ['profile-default.example.com']);
      expect(plain.order.profile).toBe('web-server');
      expect(
        Math.round((Date.parse(plain.leaf.validTo) - Date.parse(plain.leaf.validFrom)) / 86_400_000),
      ).toBe(90);
    });

    it('refuses an unknown profile with invalidProfile', async () => {
      const c = await account();
      const answer = await c.post(c.directory.newOrder!, {
        identifiers: [{ type: 'dns', value: 'x.example.com' }],
        profile: 'client-mtls',
      });
      expect([answer.status, answer.body.type]).toEqual([400, 'urn:ietf:params:acme:error:invalidProfile']);
    });
  });

  describe('renewal information (RFC 9773)', () => {
    it('suggests a window inside the validity with Retry-After; a revocation moves it into the past', async () => {
      const c = await account();
      const { leaf } = await issue(c, ['ari.example.com']);
      const id = certIdOf(leaf);
      const url = `${c.directory.renewalInfo}/${id}`;
      const first = await service.app.request(url);
      expect(first.status).toBe(200);
      expect(first.headers.get('retry-after')).toBe('21600');
      const { suggestedWindow } = (await first.json()) as { suggestedWindow: { start: string; end: string } };
      const from = Date.parse(leaf.validFrom);
      const to = Date.parse(leaf.validTo);
      expect(Date.parse(suggestedWindow.start)).toBeGreaterThan(from);
      expect(Date.parse(suggestedWindow.end)).toBeLessThan(to);
      expect(Date.parse(suggestedWindow.start)).toBeLessThan(Date.parse(suggestedWindow.end));

      expect(
        (await c.post(c.directory.revokeCert!, { certificate: leaf.raw.toString('base64url') })).status,
      ).toBe(200);
      const after = (await (await service.app.request(url)).json()) as { suggestedWindow: { end: string } };
      expect(Date.parse(after.suggestedWindow.end)).toBeLessThan(Date.now());
    });

    it('answers 404 for a certificate it did not issue and malformed for a bad identifier', async () => {
      const c = await client();
      const unknown = await service.app.request(`${c.directory.renewalInfo}/AAAA.AQID`);
      expect(unknown.status).toBe(404);
      const bad = await service.app.request(`${c.directory.renewalInfo}/not-a-cert-id`);
      expect(bad.status).toBe(404);
    });

    it('marks the replaced certificate on a new order, and refuses a second replacement with alreadyReplaced', async () => {
      const c = await account();
      const { leaf } = await issue(c, ['replace-me.example.com']);
      const id = certIdOf(leaf);
      const renewed = await readyOrder(c, ['replace-me.example.com'], { replaces: id });
      expect(renewed.body.replaces).toBe(id);
      const again = await c.post(c.directory.newOrder!, {
        identifiers: [{ type: 'dns', value: 'replace-me.example.com' }],
        replaces: id,
      });
      expect([again.status, again.body.type]).toEqual([409, 'urn:ietf:params:acme:error:alreadyReplaced']);
      const stranger = await account();
      const foreign = await stranger.post(stranger.directory.newOrder!, {
        identifiers: [{ type: 'dns', value: 'replace-me.example.com' }],
        replaces: id,
      });
      expect(foreign.status).toBe(403);
    });
  });

  describe('CAA at validation time (RFC 8659, RFC 8657)', () => {
    it('fails the challenge with caa when the records name another CA, and passes for this account only with accounturi', async () => {
      const c = await account();
      service.caa.set('caa-refused.example.com', [{ critical: 0, tag: 'issue', value: 'other.example.org' }]);
      service.caa.set('caa-mine.example.com', [
        {
          critical: 0,
          tag: 'issue',
          value: `ca.example.net; accounturi=${c.kid}; validationmethods=http-01`,
        },
      ]);
      const refused = await c.post(c.directory.newOrder!, {
        identifiers: [{ type: 'dns', value: 'caa-refused.example.com' }],
      });
      const authzUrl = refused.body.authorizations[0];
      const authz = await c.post(authzUrl, '');
      const challenge = authz.body.challenges.find((ch: { type: string }) => ch.type === 'http-01');
      service.http01.answers.set(challenge.token, c.keyAuthorization(challenge.token));
      await c.post(challenge.url, {});
      await service.acme.idle();
      const done = await c.poll(authzUrl, (b) => b.status !== 'pending');
      expect(done.body.status).toBe('invalid');
      expect(done.body.challenges[0].error.type).toBe('urn:ietf:params:acme:error:caa');

      await readyOrder(c, ['caa-mine.example.com']);
      const stranger = await account();
      const order = await stranger.post(stranger.directory.newOrder!, {
        identifiers: [{ type: 'dns', value: 'caa-mine.example.com' }],
      });
      const strangerAuthz = await stranger.post(order.body.authorizations[0], '');
      const ch = strangerAuthz.body.challenges.find((x: { type: string }) => x.type === 'http-01');
      service.http01.answers.set(ch.token, stranger.keyAuthorization(ch.token));
      await stranger.post(ch.url, {});
      await service.acme.idle();
      const theirs = await stranger.poll(order.body.authorizations[0], (b) => b.status !== 'pending');
      expect(theirs.body.status).toBe('invalid');
    });
  });

  describe('the rest of RFC 8555', () => {
    it('changes the account key (§7.3.5): the old key is refused after, the new one works', async () => {
      const c = await account();
      const newKey = newAcmeKey('ec-p384');
      const url = c.directory.keyChange!;
      const inner = signedJws(newKey, { jwk: newKey.jwk, url }, { account: c.kid, oldKey: c.key.jwk });
      const changed = await c.post(url, inner);
      expect(changed.status, JSON.stringify(changed.body)).toBe(200);
      const old = await c.post(c.kid!, '');
      expect(old.status).toBe(400);
      const moved = new AcmeClient(c.fetch, DEV, newKey);
      await moved.init();
      moved.kid = c.kid;
      expect((await moved.post(c.kid!, '')).body.status).toBe('valid');
    });

    it('refuses a keyChange to a key another account holds (409 with its Location) and an inner JWS with a nonce', async () => {
      const c = await account();
      const other = await account();
      const url = c.directory.keyChange!;
      const taken = await c.post(
        url,
        signedJws(other.key, { jwk: other.key.jwk, url }, { account: c.kid, oldKey: c.key.jwk }),
      );
      expect(taken.status).toBe(409);
      expect(taken.response.headers.get('location')).toBe(other.kid);
      const newKey = newAcmeKey();
      const nonce = await c.post(
        url,
        signedJws(newKey, { jwk: newKey.jwk, url, nonce: 'abc' }, { account: c.kid, oldKey: c.key.jwk }),
      );
      expect([nonce.status, nonce.body.type]).toEqual([400, 'urn:ietf:params:acme:error:malformed']);
      const wrongOld = await c.post(
        url,
        signedJws(newKey, { jwk: newKey.jwk, url }, { account: c.kid, oldKey: newKey.jwk }),
      );
      expect(wrongOld.status).toBe(400);
    });

    it('answers a processing order with Retry-After (§7.4)', async () => {
      const c = await account();
      const order = await c.post(c.directory.newOrder!, {
        identifiers: [{ type: 'dns', value: 'slow.example.com' }],
      });
      const url = order.response.headers.get('location')!;
      expect(order.response.headers.get('retry-after')).toBeNull();
      const { acmeOrders } = await import('../../src/db/schema/index.ts');
      const { eq } = await import('drizzle-orm');
      // What a finalize in flight on another node leaves: the order processing.
      await service.runtime.database.db
        .update(acmeOrders)
        .set({ status: 'processing' })
        .where(eq(acmeOrders.id, url.split('/').pop()!));
      const processing = await c.post(url, '');
      expect(processing.body.status).toBe('processing');
      expect(processing.response.headers.get('retry-after')).toBe('1');
    });

    it('answers malformed part-2 input with ACME problems, never a 500', async () => {
      const c = await account();
      const order = await c.post(c.directory.newOrder!, {
        identifiers: [{ type: 'dns', value: 'bad-input.example.com' }],
      });
      const authz = order.body.authorizations[0] as string;
      const newKey = newAcmeKey();
      const keyChangeUrl = c.directory.keyChange!;
      const cases: [string, () => Promise<{ status: number; body: { type?: string } }>][] = [
        ['keyChange with an empty object', () => c.post(keyChangeUrl, {})],
        [
          'keyChange with a non-JWS',
          () => c.post(keyChangeUrl, { protected: 'x', payload: 'y', signature: 'z' }),
        ],
        [
          'keyChange whose inner JWS has a kid',
          () =>
            c.post(keyChangeUrl, signedJws(newKey, { kid: c.kid, url: keyChangeUrl }, { account: c.kid })),
        ],
        [
          'keyChange whose inner JWS names another url',
          () =>
            c.post(
              keyChangeUrl,
              signedJws(newKey, { jwk: newKey.jwk, url: c.kid }, { account: c.kid, oldKey: c.key.jwk }),
            ),
        ],
        [
          'newOrder with a profile that is no string',
          () =>
            c.post(c.directory.newOrder!, {
              identifiers: [{ type: 'dns', value: 'a.example.com' }],
              profile: {},
            }),
        ],
        [
          'newOrder replacing a number',
          () =>
            c.post(c.directory.newOrder!, {
              identifiers: [{ type: 'dns', value: 'a.example.com' }],
              replaces: 5,
            }),
        ],
        [
          'newOrder replacing an unknown certificate',
          () =>
            c.post(c.directory.newOrder!, {
              identifiers: [{ type: 'dns', value: 'a.example.com' }],
              replaces: 'AAAA.AQ',
            }),
        ],
        ['an authorization given another status', () => c.post(authz, { status: 'valid' })],
        ['an authorization given extra fields', () => c.post(authz, { status: 'deactivated', x: 1 })],
        ['an orders page that does not exist', () => c.post(`${c.kid}/orders/nosuchorder`, '')],
        [
          'newAccount with a binding that is no JWS',
          async () => (await client(PRIVATE)).newAccount({ externalAccountBinding: 'kid' }),
        ],
      ];
      for (const [name, send] of cases) {
        const answer = await send();
        expect(answer.status, name).toBeGreaterThanOrEqual(400);
        expect(answer.status, name).toBeLessThan(500);
        expect(answer.body.type, name).toMatch(/^urn:ietf:params:acme:error:/);
      }
    });

    it('deactivates an authorization (§7.5.2), which makes its order invalid', async () => {
      const c = await account();
      const order = await c.post(c.directory.newOrder!, {
        identifiers: [{ type: 'dns', value: 'deact.example.com' }],
      });
      const authz = order.body.authorizations[0];
      const answer = await c.post(authz, { status: 'deactivated' });
      expect(answer.body.status).toBe('deactivated');
      expect((await c.post(order.response.headers.get('location')!, '')).body.status).toBe('invalid');
      const twice = await c.post(authz, { status: 'deactivated' });
      expect(twice.status).toBe(400);
      expect((await c.post(authz, { status: 'valid' })).status).toBe(400);
    });

    it('offers the cross-signed chain as an alternate (Link rel="alternate"), which verifies to the other root', async () => {
      const issuer = await service.runtime.repositories.issuers.get('dev-intermediate');
      const { rootPem, crossPem } = await crossSign(issuer!.certificateDer);
      alternateChains.push(parseAlternateChain(crossPem, 'test'));
      try {
        const c = await account();
        const { order, chain } = await issue(c, ['cross.example.com']);
        const url = order.certificate as string;
        expect(chain.response.headers.get('link')).toContain(`<${url}/1>;rel="alternate"`);
        const alternate = await c.post(`${url}/1`, '');
        expect(alternate.status).toBe(200);
        expect(alternate.response.headers.get('link')).toContain(`<${url}>;rel="alternate"`);
        const pems = (alternate.body as string).match(
          /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g,
        )!;
        expect(pems).toHaveLength(2);
        expect(pems[1]).toBe(crossPem);
        expect((await c.post(`${url}/2`, '')).status).toBe(404);
        if (hasTool('openssl', ['version'])) {
          const { writeFileSync } = await import('node:fs');
          const { spawnSync } = await import('node:child_process');
          const path = await import('node:path');
          const files = ['leaf', 'cross', 'other-root'].map((n) => path.join(service.dir, `${n}.pem`));
          writeFileSync(files[0]!, pems[0]!);
          writeFileSync(files[1]!, crossPem);
          writeFileSync(files[2]!, rootPem);
          const verify = spawnSync(
            'openssl',
            ['verify', '-CAfile', files[2]!, '-untrusted', files[1]!, files[0]!],
            {
              encoding: 'utf8',
            },
          );
          expect(`${verify.stdout}${verify.stderr}`).toContain(': OK');
        }
      } finally {
        alternateChains.length = 0;
      }
    });

    it('lists the account orders with Link rel="next" pagination (§7.1.2.1)', async () => {
      const c = await account();
      const created: string[] = [];
      for (const name of ['list-a', 'list-b', 'list-c']) {
        const order = await c.post(c.directory.newOrder!, {
          identifiers: [{ type: 'dns', value: `${name}.example.com` }],
        });
        created.push(order.response.headers.get('location')!);
      }
      const accountDoc = await c.post(c.kid!, '');
      const first = await c.post(accountDoc.body.orders, '');
      expect(first.body.orders).toHaveLength(2);
      const next = /<([^>]+)>;rel="next"/.exec(first.response.headers.get('link') ?? '')?.[1];
      expect(next).toBeDefined();
      const second = await c.post(next!, '');
      expect(second.body.orders).toHaveLength(1);
      expect(second.response.headers.get('link')).not.toContain('rel="next"');
      expect([...first.body.orders, ...second.body.orders].sort()).toEqual([...created].sort());
      const stranger = await account();
      expect((await stranger.post(accountDoc.body.orders, '')).status).toBe(403);
    });
  });
});
