import { webcrypto } from 'node:crypto';
import { CompactSign, exportJWK, type JWK } from 'jose';
import { beforeAll, describe, expect, test } from 'vitest';
import { fixedClock } from '../../src/lib/clock.ts';
import { createRevokeUseCase } from '../../src/revocation/revoke.usecase.ts';
import { createRevokeByKey, IAT_WINDOW_MS } from '../../src/revocation/revoke-by-key.ts';
import { memoryCertificates } from './helpers/memory.ts';
import {
  createIntermediate,
  createLeaf,
  createRoot,
  type TestCa,
  type TestKeyAlgorithm,
  type TestLeaf,
} from './helpers/pki.ts';

const NOW = new Date('2026-03-01T12:00:00Z');
const nowSeconds = NOW.getTime() / 1000;

let ca: TestCa;
let leaves: Record<TestKeyAlgorithm, TestLeaf>;
let stranger: TestLeaf;

beforeAll(async () => {
  const root = await createRoot();
  ca = await createIntermediate(root);
  const algorithms: TestKeyAlgorithm[] = ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-pss-2048', 'ed25519'];
  leaves = Object.fromEntries(
    await Promise.all(
      algorithms.map(async (algorithm) => [algorithm, await createLeaf(ca, { algorithm })] as const),
    ),
  ) as Record<TestKeyAlgorithm, TestLeaf>;
  stranger = await createLeaf(ca);
});

const JWS_ALG: Record<TestKeyAlgorithm, string> = {
  'ecdsa-p256': 'ES256',
  'ecdsa-p384': 'ES384',
  'rsa-2048': 'RS256',
  'rsa-pss-2048': 'PS256',
  ed25519: 'EdDSA',
};

async function sign(
  leaf: TestLeaf,
  payload: Record<string, unknown>,
  { alg = 'ES256', signWith = leaf, jwk }: { alg?: string; signWith?: TestLeaf; jwk?: JWK | null } = {},
): Promise<string> {
  const header: Record<string, unknown> = { alg };
  if (jwk !== null) header.jwk = jwk ?? (await exportJWK(leaf.keys.publicKey));
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader(header as never)
    .sign(signWith.keys.privateKey);
}

function setup() {
  const certificates = memoryCertificates();
  for (const leaf of [...Object.values(leaves), stranger]) {
    certificates.add({
      serial: leaf.serial,
      issuerId: 'dev-intermediate',
      notAfter: leaf.certificate.notAfter,
    });
  }
  const ders = new Map([...Object.values(leaves), stranger].map((leaf) => [leaf.serial, leaf.der]));
  const spent = new Map<string, Date>();
  const clock = fixedClock(NOW);
  const byKey = createRevokeByKey({
    certificates: { findBySerial: async (serial) => (ders.has(serial) ? { der: ders.get(serial)! } : null) },
    consumeJti: async ({ scope, jti, expiresAt }) => {
      const key = `${scope} ${jti}`;
      if (spent.has(key)) return false;
      spent.set(key, expiresAt);
      return true;
    },
    revocations: createRevokeUseCase({ certificates, clock }),
    clock,
  });
  return { byKey, certificates, spent, clock };
}

const payloadFor = (leaf: TestLeaf, extra: Record<string, unknown> = {}) => ({
  serial: leaf.serial,
  reason: 'keyCompromise',
  iat: nowSeconds,
  jti: webcrypto.randomUUID(),
  ...extra,
});

describe('revocation by proof of key possession', () => {
  test.each(['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-pss-2048', 'ed25519'] as TestKeyAlgorithm[])(
    'accepts a JWS signed with the certificate key (%s) and revokes for keyCompromise',
    async (algorithm) => {
      const { byKey, certificates } = setup();
      const leaf = leaves[algorithm];
      const result = await byKey.revokeByKey(await sign(leaf, payloadFor(leaf), { alg: JWS_ALG[algorithm] }));
      expect(result.outcome).toBe('revoked');
      expect(result.revocation.reason).toBe('keyCompromise');
      expect(certificates.rows.get(leaf.serial)!.status).toBe('revoked');
    },
  );

  test('accepts any supported reason and a serial written with colons in upper case', async () => {
    const { byKey } = setup();
    const leaf = leaves['ecdsa-p256'];
    const colons = leaf.serial.toUpperCase().match(/../g)!.join(':');
    const result = await byKey.revokeByKey(
      await sign(leaf, payloadFor(leaf, { serial: colons, reason: 'superseded' })),
    );
    expect(result.revocation).toMatchObject({ serial: leaf.serial, reason: 'superseded' });
  });

  test('refuses a JWS signed with another key, even one that verifies with its own jwk', async () => {
    const { byKey, certificates, spent } = setup();
    const leaf = leaves['ecdsa-p256'];
    const jws = await sign(leaf, payloadFor(leaf), {
      signWith: stranger,
      jwk: await exportJWK(stranger.keys.publicKey),
    });
    await expect(byKey.revokeByKey(jws)).rejects.toMatchObject({
      code: 'revocation.key_mismatch',
      category: 'forbidden',
    });
    expect(certificates.rows.get(leaf.serial)!.status).toBe('good');
    expect(spent.size).toBe(0);
  });

  test('refuses a JWS whose jwk is the certificate key but whose signature is another key', async () => {
    const { byKey } = setup();
    const leaf = leaves['ecdsa-p256'];
    const jws = await sign(leaf, payloadFor(leaf), { signWith: stranger });
    await expect(byKey.revokeByKey(jws)).rejects.toMatchObject({ code: 'revocation.jws_invalid' });
  });

  test.each([
    { name: '6 minutes old', offset: -360, code: 'revocation.iat_stale' },
    { name: '6 minutes ahead', offset: 360, code: 'revocation.iat_stale' },
    { name: 'exactly 5 minutes old', offset: -300, code: undefined },
    { name: 'exactly 5 minutes ahead', offset: 300, code: undefined },
  ])('judges an iat $name', async ({ offset, code }) => {
    const { byKey } = setup();
    const leaf = leaves['ecdsa-p256'];
    const attempt = byKey.revokeByKey(await sign(leaf, payloadFor(leaf, { iat: nowSeconds + offset })));
    if (code) await expect(attempt).rejects.toMatchObject({ code });
    else await expect(attempt).resolves.toMatchObject({ outcome: 'revoked' });
  });

  test('refuses a replayed jti and keeps it spent until iat plus the window', async () => {
    const { byKey, spent } = setup();
    const leaf = leaves['ecdsa-p256'];
    const jws = await sign(leaf, payloadFor(leaf, { jti: 'once-only' }));
    await byKey.revokeByKey(jws);
    await expect(byKey.revokeByKey(jws)).rejects.toMatchObject({
      code: 'revocation.jti_replayed',
      category: 'conflict',
    });
    // A fresh JWS with the same jti is a replay too.
    await expect(
      byKey.revokeByKey(await sign(leaf, payloadFor(leaf, { jti: 'once-only', reason: 'superseded' }))),
    ).rejects.toMatchObject({
      code: 'revocation.jti_replayed',
    });
    expect(spent.size).toBe(1);
    const [scope, expiresAt] = [...spent.entries()][0]!;
    expect(scope).toMatch(/^revoke-by-key:[A-Za-z0-9_-]{43} once-only$/);
    expect(expiresAt).toEqual(new Date(NOW.getTime() + IAT_WINDOW_MS));
  });

  test('does not spend the jti of a refused request', async () => {
    const { byKey } = setup();
    const leaf = leaves['ecdsa-p256'];
    await expect(
      byKey.revokeByKey(await sign(leaf, payloadFor(leaf, { jti: 'j1', iat: nowSeconds - 3600 }))),
    ).rejects.toMatchObject({
      code: 'revocation.iat_stale',
    });
    await expect(byKey.revokeByKey(await sign(leaf, payloadFor(leaf, { jti: 'j1' })))).resolves.toMatchObject(
      { outcome: 'revoked' },
    );
  });

  const leaf = () => leaves['ecdsa-p256'];
  test.each([
    { name: 'garbage', jws: async () => 'not a jws', code: 'revocation.jws_invalid' },
    { name: 'a JSON body', jws: async () => ({ jws: 'x' }), code: 'revocation.jws_invalid' },
    { name: 'a huge body', jws: async () => 'a'.repeat(20_000), code: 'revocation.jws_invalid' },
    {
      name: 'a tampered payload',
      jws: async () => {
        const [h, , s] = (await sign(leaf(), payloadFor(leaf()))).split('.');
        return `${h}.${Buffer.from(JSON.stringify(payloadFor(leaf(), { reason: 'superseded' }))).toString('base64url')}.${s}`;
      },
      code: 'revocation.jws_invalid',
    },
    {
      name: 'no jwk header',
      jws: async () => sign(leaf(), payloadFor(leaf()), { jwk: null }),
      code: 'revocation.jws_invalid',
    },
    {
      name: 'a jwk with private material',
      jws: async () => sign(leaf(), payloadFor(leaf()), { jwk: await exportJWK(leaf().keys.privateKey) }),
      code: 'revocation.jws_invalid',
    },
    {
      name: 'an alg outside the allowlist',
      jws: async () => {
        const [, p, s] = (await sign(leaf(), payloadFor(leaf()))).split('.');
        const header = Buffer.from(
          JSON.stringify({ alg: 'none', jwk: await exportJWK(leaf().keys.publicKey) }),
        ).toString('base64url');
        return `${header}.${p}.${s}`;
      },
      code: 'revocation.jws_invalid',
    },
    {
      name: 'a payload that is not JSON',
      jws: async () => signRaw(leaf(), 'hello'),
      code: 'revocation.payload_invalid',
    },
    {
      name: 'a payload that is an array',
      jws: async () => signRaw(leaf(), '[1]'),
      code: 'revocation.payload_invalid',
    },
    {
      name: 'no serial',
      jws: async () => sign(leaf(), payloadFor(leaf(), { serial: undefined })),
      code: 'revocation.payload_invalid',
    },
    {
      name: 'an iat in milliseconds as a string',
      jws: async () => sign(leaf(), payloadFor(leaf(), { iat: String(NOW.getTime()) })),
      code: 'revocation.payload_invalid',
    },
    {
      name: 'a fractional iat',
      jws: async () => sign(leaf(), payloadFor(leaf(), { iat: nowSeconds + 0.5 })),
      code: 'revocation.payload_invalid',
    },
    {
      name: 'no jti',
      jws: async () => sign(leaf(), payloadFor(leaf(), { jti: undefined })),
      code: 'revocation.payload_invalid',
    },
    {
      name: 'an empty jti',
      jws: async () => sign(leaf(), payloadFor(leaf(), { jti: '' })),
      code: 'revocation.payload_invalid',
    },
    {
      name: 'no reason',
      jws: async () => sign(leaf(), payloadFor(leaf(), { reason: undefined })),
      code: 'revocation.payload_invalid',
    },
    {
      name: 'certificateHold',
      jws: async () => sign(leaf(), payloadFor(leaf(), { reason: 'certificateHold' })),
      code: 'revocation.reason_invalid',
    },
    {
      name: 'a serial that is not hex',
      jws: async () => sign(leaf(), payloadFor(leaf(), { serial: 'zz' })),
      code: 'revocation.serial_invalid',
    },
    {
      name: 'a serial never issued',
      jws: async () => sign(leaf(), payloadFor(leaf(), { serial: '0bad' })),
      code: 'revocation.certificate_not_found',
    },
  ])('refuses $name with $code', async ({ jws, code }) => {
    const { byKey, spent } = setup();
    await expect(byKey.revokeByKey(await jws())).rejects.toMatchObject({ code });
    expect(spent.size).toBe(0);
  });
});

async function signRaw(leaf: TestLeaf, text: string): Promise<string> {
  return new CompactSign(new TextEncoder().encode(text))
    .setProtectedHeader({ alg: 'ES256', jwk: await exportJWK(leaf.keys.publicKey) })
    .sign(leaf.keys.privateKey);
}
