import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { OctetString } from '@peculiar/asn1-schema';
import { Extension } from '@peculiar/asn1-x509';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { fixedClock } from '../../src/lib/clock.ts';
import { readIssuerFacts } from '../../src/revocation/issuer.ts';
import { createSigningBudget } from '../../src/revocation/ocsp-rate-limit.ts';
import {
  createOcspResponder,
  decodeOcspGetPath,
  errorResponse,
  type OcspIssuer,
  type OcspResponderOptions,
} from '../../src/revocation/ocsp-responder.ts';
import { hasTool } from '../helpers/tools.ts';
import { memoryCertificates } from './helpers/memory.ts';
import { buildOcspRequest, decodeOcspResponse, serveOcsp } from './helpers/ocsp.ts';
import { openssl, run, scratch } from './helpers/openssl.ts';
import {
  createIntermediate,
  createLeaf,
  createRoot,
  type TestCa,
  type TestKeyAlgorithm,
  type TestLeaf,
} from './helpers/pki.ts';

const NOW = new Date('2026-03-01T12:00:00.250Z');
const HOUR = 3_600_000;

let root: TestCa;
let ca: TestCa;
let stranger: TestCa;
let good: TestLeaf;
let revoked: TestLeaf;
let unspecified: TestLeaf;
let neverStored: TestLeaf;
let strangerLeaf: TestLeaf;
let certificates: ReturnType<typeof memoryCertificates>;

beforeAll(async () => {
  root = await createRoot();
  ca = await createIntermediate(root);
  stranger = await createIntermediate(root, { name: 'CN=Not Served Here' });
  [good, revoked, unspecified, neverStored, strangerLeaf] = await Promise.all([
    createLeaf(ca),
    createLeaf(ca),
    createLeaf(ca),
    createLeaf(ca),
    createLeaf(stranger),
  ]);
  certificates = memoryCertificates();
  const notAfter = new Date(NOW.getTime() + 30 * 24 * HOUR);
  certificates.add({ serial: good.serial, issuerId: 'dev-intermediate', notAfter });
  certificates.add({
    serial: revoked.serial,
    issuerId: 'dev-intermediate',
    notAfter,
    status: 'revoked',
    revokedAt: new Date('2026-02-28T10:00:00.700Z'),
    revocationReason: 'keyCompromise',
  });
  certificates.add({
    serial: unspecified.serial,
    issuerId: 'dev-intermediate',
    notAfter,
    status: 'revoked',
    revokedAt: new Date('2026-02-28T11:00:00Z'),
    revocationReason: 'unspecified',
  });
});

function responder(overrides: Partial<OcspResponderOptions> = {}, issuer: Partial<OcspIssuer> = {}) {
  const errors: unknown[] = [];
  const instance = createOcspResponder({
    issuers: [{ id: 'dev-intermediate', certificate: ca.der, signer: ca.signer, ...issuer }],
    status: certificates,
    clock: fixedClock(NOW),
    onError: (error) => errors.push(error),
    ...overrides,
  });
  return Object.assign(instance, { errors });
}

describe('the OCSP responder', () => {
  test('answers good and revoked for several CertIDs in one request', async () => {
    const answer = await responder().answer(
      buildOcspRequest({
        certIds: [
          { issuer: ca, serial: good.serial },
          { issuer: ca, serial: revoked.serial, hash: 'sha256' },
        ],
      }),
    );
    expect(answer.status).toBe('successful');
    expect(answer.certStatuses).toEqual(['good', 'revoked']);
    const { basic } = decodeOcspResponse(answer.der);
    const [a, b] = basic!.tbsResponseData.responses;
    expect(a!.certStatus.good).toBeDefined();
    expect(b!.certStatus.revoked!.revocationTime).toEqual(new Date('2026-02-28T10:00:00Z'));
    expect(b!.certStatus.revoked!.revocationReason!.reason).toBe(1);
    expect(b!.certID.hashAlgorithm.algorithm).toBe('2.16.840.1.101.3.4.2.1');
  });

  test.each([
    { name: 'alone', withGood: false, nonce: undefined },
    { name: 'alone, with a nonce', withGood: false, nonce: Uint8Array.of(7) },
    { name: 'beside an issued one', withGood: true, nonce: undefined },
  ])(
    'answers a serial this CA never issued with the unsigned unauthorized (RFC 5019 §2.2.3), $name',
    async ({ withGood, nonce }) => {
      let signatures = 0;
      const counting = {
        key: ca.signer.key,
        crypto: {
          subtle: {
            sign: (...args: Parameters<typeof ca.signer.crypto.subtle.sign>) => {
              signatures += 1;
              return ca.signer.crypto.subtle.sign(...args);
            },
          },
        },
      };
      const instance = responder({}, { signer: counting });
      const certIds = [
        ...(withGood ? [{ issuer: ca, serial: good.serial }] : []),
        { issuer: ca, serial: neverStored.serial },
      ];
      const answer = await instance.answer(buildOcspRequest({ certIds, ...(nonce ? { nonce } : {}) }));
      expect(answer.status).toBe('unauthorized');
      expect(Buffer.from(answer.der).equals(Buffer.from(errorResponse('unauthorized')))).toBe(true);
      expect(signatures).toBe(0);
    },
  );

  test('writes whole-second times, nextUpdate after the configured validity, byKey and no certificates', async () => {
    const answer = await responder({ validityMs: 2 * HOUR }).answer(
      buildOcspRequest({ certIds: [{ issuer: ca, serial: good.serial }] }),
    );
    const { basic } = decodeOcspResponse(answer.der);
    const data = basic!.tbsResponseData;
    expect(data.producedAt).toEqual(new Date('2026-03-01T12:00:00Z'));
    expect(data.responses[0]!.thisUpdate).toEqual(new Date('2026-03-01T12:00:00Z'));
    expect(data.responses[0]!.nextUpdate).toEqual(new Date('2026-03-01T14:00:00Z'));
    expect(answer.nextUpdate).toEqual(new Date('2026-03-01T14:00:00Z'));
    const keyHash = createHash('sha1').update(readIssuerFacts(ca.der).subjectPublicKey).digest();
    expect(Buffer.from(data.responderID.byKey!.buffer).equals(keyHash)).toBe(true);
    expect(basic!.certs).toBeUndefined();
    expect(data.responseExtensions).toBeUndefined();
    expect(answer.nonce).toBe(false);
  });

  test('leaves the reason out of a revocation for an unspecified reason', async () => {
    const { basic } = decodeOcspResponse(
      await responder().respond(buildOcspRequest({ certIds: [{ issuer: ca, serial: unspecified.serial }] })),
    );
    const info = basic!.tbsResponseData.responses[0]!.certStatus.revoked!;
    expect(info.revocationTime).toEqual(new Date('2026-02-28T11:00:00Z'));
    expect(info.revocationReason).toBeUndefined();
  });

  test.each([
    { name: 'one octet', length: 1 },
    { name: '32 octets', length: 32 },
    { name: '128 octets', length: 128 },
  ])('echoes a nonce of $name (RFC 9654)', async ({ length }) => {
    const nonce = new Uint8Array(length).fill(7);
    const answer = await responder().answer(
      buildOcspRequest({ certIds: [{ issuer: ca, serial: good.serial }], nonce }),
    );
    expect(answer.status).toBe('successful');
    expect(answer.nonce).toBe(true);
    const [extension] = decodeOcspResponse(answer.der).basic!.tbsResponseData.responseExtensions!;
    expect(extension!.extnID).toBe('1.3.6.1.5.5.7.48.1.2');
    expect(extension!.critical).toBe(false);
    const inner = Buffer.from(extension!.extnValue.buffer);
    expect(inner.subarray(inner.length - length).equals(Buffer.from(nonce))).toBe(true);
  });

  const nonceExtension = (value: Uint8Array) =>
    new Extension({ extnID: '1.3.6.1.5.5.7.48.1.2', critical: false, extnValue: new OctetString(value) });

  test.each([
    {
      name: 'a nonce of 129 octets',
      request: () =>
        buildOcspRequest({ certIds: [{ issuer: ca, serial: good.serial }], nonce: new Uint8Array(129) }),
    },
    {
      name: 'an empty nonce',
      request: () =>
        buildOcspRequest({ certIds: [{ issuer: ca, serial: good.serial }], nonce: new Uint8Array(0) }),
    },
    {
      name: 'a nonce that is not an OCTET STRING',
      request: () =>
        buildOcspRequest({
          certIds: [{ issuer: ca, serial: good.serial }],
          extensions: [nonceExtension(Uint8Array.of(2, 1, 5))],
        }),
    },
    {
      name: 'two nonces',
      request: () =>
        buildOcspRequest({
          certIds: [{ issuer: ca, serial: good.serial }],
          extensions: [nonceExtension(Uint8Array.of(4, 1, 5))],
          nonce: Uint8Array.of(9),
        }),
    },
    {
      name: 'an unknown critical extension',
      request: () =>
        buildOcspRequest({
          certIds: [{ issuer: ca, serial: good.serial }],
          extensions: [
            new Extension({
              extnID: '1.2.3.4',
              critical: true,
              extnValue: new OctetString(Uint8Array.of(5, 0)),
            }),
          ],
        }),
    },
    { name: 'garbage', request: () => Buffer.from('hello, responder') },
    { name: 'nothing', request: () => new Uint8Array(0) },
    {
      name: 'trailing bytes',
      request: () =>
        Buffer.concat([buildOcspRequest({ certIds: [{ issuer: ca, serial: good.serial }] }), Buffer.of(0)]),
    },
    {
      name: 'a truncated request',
      request: () => buildOcspRequest({ certIds: [{ issuer: ca, serial: good.serial }] }).subarray(0, 40),
    },
    { name: 'no CertID', request: () => buildOcspRequest({ certIds: [] }) },
    {
      name: 'more CertIDs than allowed',
      request: () =>
        buildOcspRequest({
          certIds: Array.from({ length: 21 }, () => ({ issuer: ca, serial: good.serial })),
        }),
    },
    { name: 'an indefinite length', request: () => Buffer.from('3080300a300830063004300204000000', 'hex') },
  ])('answers malformedRequest for $name', async ({ request }) => {
    const instance = responder();
    const answer = await instance.answer(new Uint8Array(request()));
    expect(answer.status).toBe('malformedRequest');
    expect(Buffer.from(answer.der).toString('hex')).toBe('30030a0101');
    expect(instance.errors).toEqual([]);
  });

  test('ignores an unknown extension that is not critical', async () => {
    const answer = await responder().answer(
      buildOcspRequest({
        certIds: [{ issuer: ca, serial: good.serial }],
        extensions: [
          new Extension({
            extnID: '1.2.3.4',
            critical: false,
            extnValue: new OctetString(Uint8Array.of(5, 0)),
          }),
        ],
      }),
    );
    expect(answer.certStatuses).toEqual(['good']);
  });

  test('answers unauthorized for an issuer it does not serve', async () => {
    const answer = await responder().answer(
      buildOcspRequest({ certIds: [{ issuer: stranger, serial: strangerLeaf.serial }] }),
    );
    expect(answer.status).toBe('unauthorized');
    expect(Buffer.from(answer.der).toString('hex')).toBe('30030a0106');
  });

  test('answers unauthorized for CertIDs of two issuers in one request', async () => {
    const both = responder({
      issuers: [
        { id: 'dev-intermediate', certificate: ca.der, signer: ca.signer },
        { id: 'stranger', certificate: stranger.der, signer: stranger.signer },
      ],
    });
    const answer = await both.answer(
      buildOcspRequest({
        certIds: [
          { issuer: ca, serial: good.serial },
          { issuer: stranger, serial: strangerLeaf.serial },
        ],
      }),
    );
    expect(answer.status).toBe('unauthorized');
  });

  test('answers unauthorized for a serial stored under another issuer', async () => {
    const both = responder({
      issuers: [
        { id: 'dev-intermediate', certificate: ca.der, signer: ca.signer },
        { id: 'stranger', certificate: stranger.der, signer: stranger.signer },
      ],
    });
    // The good leaf belongs to dev-intermediate; asking the stranger about its serial is not "good".
    const answer = await both.answer(
      buildOcspRequest({ certIds: [{ issuer: stranger, serial: good.serial }] }),
    );
    expect(answer.status).toBe('unauthorized');
  });

  test.each([
    { name: 'a pending reservation', status: 'pending' as const },
    { name: 'a failed reservation', status: 'failed' as const },
  ])('answers unauthorized for $name: no certificate of it was ever returned', async ({ status }) => {
    const serial = '7a7a7a7a7a7a7a7a';
    const local = memoryCertificates();
    local.add({ serial, issuerId: 'dev-intermediate', notAfter: NOW, status });
    const answer = await responder({ status: local }).answer(
      buildOcspRequest({ certIds: [{ issuer: ca, serial }] }),
    );
    expect(answer.status).toBe('unauthorized');
  });

  test.each([
    { name: 'a zero serial', serial: '00' },
    { name: 'a negative serial', serial: 'ff01' },
    { name: 'a serial over 20 octets', serial: '01'.repeat(21) },
  ])('answers unauthorized for $name without asking the database', async ({ serial }) => {
    let asked = 0;
    const answer = await responder({
      status: {
        findStatus: async () => {
          asked += 1;
          return null;
        },
      },
    }).answer(buildOcspRequest({ certIds: [{ issuer: ca, serial }] }));
    expect(answer.status).toBe('unauthorized');
    expect(asked).toBe(0);
  });

  test.each([
    { code: 'hsm.unavailable', status: 'tryLater' },
    { code: 'hsm.sealed', status: 'tryLater' },
    { code: 'hsm.not_logged_in', status: 'tryLater' },
    { code: 'hsm.key_function_not_permitted', status: 'internalError' },
  ])('answers $status when the signer fails with $code', async ({ code, status }) => {
    const instance = responder(
      {},
      {
        signer: {
          crypto: {
            subtle: {
              sign: async () => Promise.reject(Object.assign(new Error(`secret detail ${code}`), { code })),
            },
          },
          key: ca.signer.key,
        },
      },
    );
    const der = await instance.respond(buildOcspRequest({ certIds: [{ issuer: ca, serial: good.serial }] }));
    expect(der).toEqual(errorResponse(status as 'tryLater'));
    expect(Buffer.from(der).toString('latin1')).not.toContain('secret');
    expect(instance.errors).toHaveLength(1);
  });

  test.each([
    {
      name: 'a database that is down',
      error: Object.assign(new Error('connect'), { code: 'ECONNREFUSED' }),
      status: 'tryLater',
    },
    {
      name: 'a SQLSTATE connection failure',
      error: new Error('x', { cause: Object.assign(new Error('y'), { code: '08006' }) }),
      status: 'tryLater',
    },
    { name: 'a bug', error: new TypeError('undefined is not a function'), status: 'internalError' },
  ])('answers $status for $name', async ({ error, status }) => {
    const answer = await responder({ status: { findStatus: async () => Promise.reject(error) } }).answer(
      buildOcspRequest({ certIds: [{ issuer: ca, serial: good.serial }] }),
    );
    expect(answer.status).toBe(status);
  });

  test('answers tryLater when the signer does not answer in time', async () => {
    const answer = await responder(
      { timeoutMs: 50 },
      { signer: { crypto: { subtle: { sign: () => new Promise(() => {}) } }, key: ca.signer.key } },
    ).answer(buildOcspRequest({ certIds: [{ issuer: ca, serial: good.serial }] }));
    expect(answer.status).toBe('tryLater');
  });

  test('refuses a configuration that cannot work when created', () => {
    expect(() => responder({ validityMs: 0 })).toThrow(/validityMs/);
    expect(() => responder({ maxCertIds: 0 })).toThrow(/maxCertIds/);
  });
});

describe('pre-signed responses', () => {
  function counted(options: Partial<OcspResponderOptions> = {}) {
    const calls = { status: 0, sign: 0 };
    const clock = fixedClock(NOW);
    const local = memoryCertificates();
    local.add({
      serial: good.serial,
      issuerId: 'dev-intermediate',
      notAfter: new Date(NOW.getTime() + HOUR),
    });
    local.add({
      serial: revoked.serial,
      issuerId: 'dev-intermediate',
      notAfter: new Date(NOW.getTime() + HOUR),
    });
    const instance = createOcspResponder({
      issuers: [
        {
          id: 'dev-intermediate',
          certificate: ca.der,
          signer: {
            key: ca.signer.key,
            crypto: {
              subtle: {
                sign: (...args: Parameters<typeof ca.signer.crypto.subtle.sign>) => {
                  calls.sign += 1;
                  return ca.signer.crypto.subtle.sign(...args);
                },
              },
            },
          },
        },
      ],
      status: {
        findStatus: (serial) => {
          calls.status += 1;
          return local.findStatus(serial);
        },
      },
      clock,
      cacheEntries: 2,
      ...options,
    });
    return { instance, calls, clock, local };
  }
  const ask = (serial: string, nonce?: Uint8Array, hash: 'sha1' | 'sha256' = 'sha1') =>
    buildOcspRequest({ certIds: [{ issuer: ca, serial, hash }], ...(nonce ? { nonce } : {}) });

  test('answers a repeated request without a nonce from memory, same bytes', async () => {
    const { instance, calls } = counted();
    const first = await instance.respond(ask(good.serial));
    const second = await instance.respond(ask(good.serial));
    expect(Buffer.from(second).equals(Buffer.from(first))).toBe(true);
    expect(calls).toEqual({ status: 1, sign: 1 });
  });

  test('never answers a request with a nonce from memory', async () => {
    const { instance, calls } = counted();
    await instance.respond(ask(good.serial, Uint8Array.of(1)));
    await instance.respond(ask(good.serial, Uint8Array.of(1)));
    expect(calls.sign).toBe(2);
  });

  test('forgets a serial when told of its revocation', async () => {
    const { instance, local } = counted();
    expect((await instance.answer(ask(good.serial))).certStatuses).toEqual(['good']);
    await local.revoke(good.serial, { reason: 'keyCompromise', revokedAt: NOW });
    instance.invalidate(good.serial.toUpperCase());
    expect((await instance.answer(ask(good.serial))).certStatuses).toEqual(['revoked']);
  });

  test('serves the same response until 40% of its validity, then signs a new one while serving the old', async () => {
    const { instance, calls, clock } = counted();
    const first = await instance.respond(ask(good.serial));
    clock.advance(0.4 * 4 * HOUR - 1000);
    await instance.respond(ask(good.serial));
    expect(calls.sign).toBe(1);
    clock.advance(1000);
    // Past the refresh point: still the old bytes, and one new signature in the background.
    const during = await instance.respond(ask(good.serial));
    expect(Buffer.from(during).equals(Buffer.from(first))).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(calls.sign).toBe(2);
    const later = decodeOcspResponse(await instance.respond(ask(good.serial)));
    expect(later.basic!.tbsResponseData.producedAt).toEqual(new Date('2026-03-01T13:36:00Z'));
    expect(calls.sign).toBe(2);
  });

  test('shares one signature among concurrent requests for one serial (single-flight)', async () => {
    const { instance, calls } = counted();
    const answers = await Promise.all(Array.from({ length: 50 }, () => instance.respond(ask(good.serial))));
    expect(calls.sign).toBe(1);
    expect(new Set(answers.map((der) => Buffer.from(der).toString('hex'))).size).toBe(1);
  });

  test('keeps at most cacheEntries responses, dropping the least recently used', async () => {
    const { instance, calls } = counted();
    await instance.respond(ask(good.serial));
    await instance.respond(ask(revoked.serial));
    await instance.respond(ask(good.serial));
    await instance.respond(ask(good.serial, undefined, 'sha256'));
    expect(calls.sign).toBe(3);
    expect(instance.cacheSize()).toBe(2);
    await instance.respond(ask(good.serial));
    expect(calls.sign).toBe(3);
    await instance.respond(ask(revoked.serial));
    expect(calls.sign).toBe(4);
  });

  test('stays within cacheEntries under 2,000 distinct serials, and a dropped one is signed again', async () => {
    const { instance, calls, local } = counted({ cacheEntries: 100 });
    const serials = Array.from({ length: 2000 }, (_, i) => `7f${(i + 1).toString(16).padStart(6, '0')}`);
    for (const serial of serials) {
      local.add({ serial, issuerId: 'dev-intermediate', notAfter: new Date(NOW.getTime() + HOUR) });
    }
    let largest = 0;
    for (const serial of serials) {
      expect((await instance.answer(ask(serial))).certStatuses).toEqual(['good']);
      largest = Math.max(largest, instance.cacheSize());
    }
    expect(largest).toBe(100);
    expect(calls.sign).toBe(2000);
    // The last 100 are still in memory; the first was dropped long ago and costs a signature again.
    await instance.respond(ask(serials.at(-1)!));
    expect(calls.sign).toBe(2000);
    await instance.respond(ask(serials[0]!));
    expect(calls.sign).toBe(2001);
  });

  test('over the signing budget, a request with a nonce gets the pre-signed response without it', async () => {
    const clock = fixedClock(NOW);
    const { instance, calls } = counted({ signingBudget: createSigningBudget({ perMinute: 2, clock }) });
    const nonced = (n: number) => ask(good.serial, Uint8Array.of(n));
    expect((await instance.answer(nonced(1), { client: '192.0.2.1' })).nonce).toBe(true);
    expect((await instance.answer(nonced(2), { client: '192.0.2.1' })).nonce).toBe(true);
    const over = await instance.answer(nonced(3), { client: '192.0.2.1' });
    expect(over.status).toBe('successful');
    expect(over.nonce).toBe(false);
    expect(decodeOcspResponse(over.der).basic!.tbsResponseData.responseExtensions).toBeUndefined();
    // Another address has its own budget; several CertIDs over the budget get tryLater.
    expect((await instance.answer(nonced(4), { client: '192.0.2.2' })).nonce).toBe(true);
    const several = buildOcspRequest({
      certIds: [
        { issuer: ca, serial: good.serial },
        { issuer: ca, serial: revoked.serial },
      ],
      nonce: Uint8Array.of(5),
    });
    expect((await instance.answer(several, { client: '192.0.2.1' })).status).toBe('tryLater');
    expect(calls.sign).toBe(4);
    clock.advance(60_000);
    expect((await instance.answer(several, { client: '192.0.2.1' })).status).toBe('successful');
  });

  test('does not keep failures', async () => {
    let fail = true;
    const { instance } = counted({
      status: {
        findStatus: async (serial) => {
          if (fail) throw Object.assign(new Error('down'), { code: 'ECONNREFUSED' });
          return certificates.findStatus(serial);
        },
      },
    });
    expect((await instance.answer(ask(good.serial))).status).toBe('tryLater');
    fail = false;
    expect((await instance.answer(ask(good.serial))).status).toBe('successful');
  });
});

describe('decodeOcspGetPath', () => {
  const request = buildOcspRequestOnce();
  function buildOcspRequestOnce() {
    // A fixed request whose base64 holds '+', '/' and '='.
    return Buffer.from(
      'MEMwQTA/MD0wOzAJBgUrDgMCGgUABBT+/+/+/+/+/+/+/+/+/+/+/+/+/gQU////////////////////////AgIBAg==',
      'base64',
    );
  }
  const base64 = request.toString('base64');

  test.each([
    { name: 'plain base64 with slashes', path: base64 },
    { name: 'fully URL-encoded', path: encodeURIComponent(base64) },
    { name: 'a plus turned into a space', path: base64.replaceAll('+', ' ') },
    { name: 'a plus turned into %20', path: base64.replaceAll('+', '%20') },
    { name: 'base64url without padding', path: request.toString('base64url') },
    { name: 'a leading slash', path: `/${base64}` },
  ])('decodes $name', ({ path }) => {
    expect(Buffer.from(decodeOcspGetPath(path)).equals(request)).toBe(true);
  });

  test.each([
    { name: 'an empty path', path: '' },
    { name: 'a bad percent-escape', path: 'MEM%ZZ' },
    { name: 'characters outside base64', path: 'MEMw*QTA' },
    { name: 'a lone trailing character', path: 'MEMwQ' },
    { name: 'wrong padding', path: 'MEMwQTA==' },
    { name: 'a very long path', path: 'A'.repeat(10_000) },
  ])('refuses $name', ({ path }) => {
    expect(() => decodeOcspGetPath(path)).toThrow(
      expect.objectContaining({ code: 'ocsp.malformed_request' }),
    );
  });
});

describe.runIf(hasTool('openssl', ['version']))('openssl ocsp as the client', () => {
  const dir = scratch();
  let server: Awaited<ReturnType<typeof serveOcsp>>;
  let files: Record<string, string>;

  beforeAll(async () => {
    server = await serveOcsp(
      createOcspResponder({
        issuers: [{ id: 'dev-intermediate', certificate: ca.der, signer: ca.signer }],
        status: certificates,
        clock: { now: () => new Date() },
      }),
    );
    files = {
      root: dir.write('root.pem', root.pem),
      ca: dir.write('ca.pem', ca.pem),
      good: dir.write('good.pem', good.pem),
      revoked: dir.write('revoked.pem', revoked.pem),
      unknown: dir.write('unknown.pem', neverStored.pem),
      stranger: dir.write('stranger.pem', stranger.pem),
      strangerLeaf: dir.write('stranger-leaf.pem', strangerLeaf.pem),
    };
  });
  afterAll(async () => {
    await server.close();
    dir.cleanup();
  });

  const ask = (extra: string[]) =>
    openssl(['ocsp', '-url', server.url, '-issuer', files.ca!, '-CAfile', files.root!, ...extra]);

  test.each([
    { name: 'with a nonce', flags: [] as string[] },
    { name: 'without a nonce', flags: ['-no_nonce'] },
  ])('reports good and revoked and verifies the response, $name', async ({ flags }) => {
    const result = await ask(['-cert', files.good!, '-cert', files.revoked!, ...flags]);
    expect(result.output).toContain('Response verify OK');
    expect(result.stdout).toContain(`${files.good}: good`);
    expect(result.stdout).toContain(`${files.revoked}: revoked`);
    expect(result.stdout).toContain('Reason: keyCompromise');
    expect(result.stdout).toContain('Revocation Time: Feb 28 10:00:00 2026 GMT');
    expect(result.output).not.toMatch(/WARNING|error/i);
    expect(result.code).toBe(0);
  });

  test('answers unauthorized for a certificate the database does not hold', async () => {
    const result = await ask(['-cert', files.unknown!]);
    expect(result.output).toContain('Responder Error: unauthorized (6)');
  });

  test('answers SHA-256 CertIDs', async () => {
    const result = await ask(['-sha256', '-cert', files.good!]);
    expect(result.output).toContain('Response verify OK');
    expect(result.stdout).toContain(`${files.good}: good`);
  });

  test('answers a request for an issuer it does not serve with unauthorized', async () => {
    const result = await openssl([
      'ocsp',
      '-url',
      server.url,
      '-issuer',
      files.stranger!,
      '-cert',
      files.strangerLeaf!,
      '-CAfile',
      files.root!,
    ]);
    expect(result.output).toContain('Responder Error: unauthorized (6)');
  });

  test('answers a malformed request with a DER malformedRequest', async () => {
    const response = await fetch(server.url, {
      method: 'POST',
      body: 'not an OCSP request',
      headers: { 'content-type': 'application/ocsp-request' },
    });
    const der = new Uint8Array(await response.arrayBuffer());
    expect(Buffer.from(der).toString('hex')).toBe('30030a0101');
    const result = await openssl([
      'ocsp',
      '-respin',
      dir.write('malformed.der', der),
      '-resp_text',
      '-noverify',
    ]);
    expect(result.output).toContain('Responder Error: malformedrequest (1)');
  });

  test('answers GET: curl fetches the URL-encoded request, openssl ocsp -respin verifies it', async () => {
    const reqFile = dir.file('get-req.der');
    await openssl(['ocsp', '-issuer', files.ca!, '-cert', files.revoked!, '-no_nonce', '-reqout', reqFile]);
    const encoded = encodeURIComponent(readFileSync(reqFile).toString('base64'));
    const respFile = dir.file('get-resp.der');
    const curl = await run('curl', ['-sS', '-f', '-o', respFile, `${server.url}/ocsp/${encoded}`]);
    expect(curl.code).toBe(0);
    const result = await openssl([
      'ocsp',
      '-respin',
      respFile,
      '-issuer',
      files.ca!,
      '-cert',
      files.revoked!,
      '-CAfile',
      files.root!,
      '-no_nonce',
    ]);
    expect(result.output).toContain('Response verify OK');
    expect(result.stdout).toContain(`${files.revoked}: revoked`);
  });

  test('echoes the nonce of a GET request (openssl -reqin/-respin checks it)', async () => {
    const reqFile = dir.file('nonce-req.der');
    await openssl(['ocsp', '-issuer', files.ca!, '-cert', files.good!, '-reqout', reqFile]);
    const base64 = readFileSync(reqFile).toString('base64');
    // The raw base64, slashes and all: the route takes the rest of the path.
    const response = await fetch(`${server.url}/ocsp/${base64}`);
    const respFile = dir.write('nonce-resp.der', new Uint8Array(await response.arrayBuffer()));
    const result = await openssl([
      'ocsp',
      '-reqin',
      reqFile,
      '-respin',
      respFile,
      '-CAfile',
      files.root!,
      '-verify_other',
      files.ca!,
    ]);
    expect(result.output).toContain('Response verify OK');
    expect(result.output).not.toMatch(/nonce/i);
  });
});

describe.runIf(hasTool('openssl', ['version']))('a delegated responder (RFC 6960 §4.2.2.2)', () => {
  const dir = scratch();
  afterAll(() => dir.cleanup());

  test('signs with its own key, names itself byKey and sends its certificate; openssl accepts it', async () => {
    const responderCert = await createLeaf(ca, { name: 'CN=Signet OCSP Responder', ocspSigning: true });
    const server = await serveOcsp(
      createOcspResponder({
        issuers: [
          {
            id: 'dev-intermediate',
            certificate: ca.der,
            signer: { crypto: ca.signer.crypto, key: responderCert.keys.privateKey },
            responderCertificate: responderCert.der,
          },
        ],
        status: certificates,
        clock: { now: () => new Date() },
      }),
    );
    try {
      const respFile = dir.file('delegated.der');
      const result = await openssl([
        'ocsp',
        '-url',
        server.url,
        '-issuer',
        dir.write('ca.pem', ca.pem),
        '-cert',
        dir.write('good.pem', good.pem),
        '-CAfile',
        dir.write('root.pem', root.pem),
        '-respout',
        respFile,
      ]);
      expect(result.output).toContain('Response verify OK');
      expect(result.stdout).toContain(': good');
      const { basic } = decodeOcspResponse(new Uint8Array(readFileSync(respFile)));
      expect(basic!.certs).toHaveLength(1);
      const keyHash = createHash('sha1').update(readIssuerFacts(responderCert.der).subjectPublicKey).digest();
      expect(Buffer.from(basic!.tbsResponseData.responderID.byKey!.buffer).equals(keyHash)).toBe(true);
    } finally {
      await server.close();
    }
  });
});

describe.runIf(hasTool('openssl', ['version']))(
  'openssl verifies responses signed with every key type',
  () => {
    const dir = scratch();
    afterAll(() => dir.cleanup());
    const algorithms: TestKeyAlgorithm[] = [
      'ecdsa-p256',
      'ecdsa-p384',
      'rsa-2048',
      'rsa-pss-2048',
      'ed25519',
    ];

    test.each(algorithms)('%s', async (algorithm) => {
      const issuerRoot = await createRoot({ algorithm });
      const issuer = await createIntermediate(issuerRoot, { algorithm });
      const leaf = await createLeaf(issuer);
      const local = memoryCertificates();
      local.add({ serial: leaf.serial, issuerId: 'i', notAfter: new Date(Date.now() + HOUR) });
      const server = await serveOcsp(
        createOcspResponder({
          issuers: [{ id: 'i', certificate: issuer.der, signer: issuer.signer }],
          status: local,
          clock: { now: () => new Date() },
        }),
      );
      try {
        const result = await openssl([
          'ocsp',
          '-url',
          server.url,
          '-issuer',
          dir.write(`${algorithm}-ca.pem`, issuer.pem),
          '-cert',
          dir.write(`${algorithm}-leaf.pem`, leaf.pem),
          '-CAfile',
          dir.write(`${algorithm}-root.pem`, issuerRoot.pem),
        ]);
        expect(result.output).toContain('Response verify OK');
        expect(result.stdout).toContain(': good');
      } finally {
        await server.close();
      }
    });
  },
);
