import { generateKeyPairSync } from 'node:crypto';
import type { JWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { AcmeError } from '../../src/acme/errors.ts';
import { authorizationTarget, parseOrderIdentifiers } from '../../src/acme/identifiers.ts';
import { checkPublicJwk, parseJws, readPayload, verifyJws } from '../../src/acme/jws.ts';
import { AcmeClient, newAcmeKey } from '../helpers/acme-client.ts';

/** The JWS rules of RFC 8555 §6.2-6.5 and identifier normalisation, without a server. */

const b64 = (value: unknown) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const jws = (header: unknown, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ protected: b64(header), payload: '', signature: 'AAAA', ...extra });
const goodHeader = {
  alg: 'ES256',
  nonce: 'n'.repeat(22),
  url: 'https://ca.example.com/acme/dev/new-account',
  jwk: newAcmeKey().jwk,
};

function typeOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (error instanceof AcmeError) return error.type;
    throw error;
  }
  return 'accepted';
}

describe('parseJws (RFC 8555 §6.2)', () => {
  it.each([
    ['a well-formed header with jwk', jws(goodHeader), 'accepted'],
    [
      'a header with kid',
      jws({ ...goodHeader, jwk: undefined, kid: 'https://ca.example.com/acme/dev/account/x' }),
      'accepted',
    ],
    ['alg none', jws({ ...goodHeader, alg: 'none' }), 'badSignatureAlgorithm'],
    ['alg HS256', jws({ ...goodHeader, alg: 'HS256' }), 'badSignatureAlgorithm'],
    ['alg RS512', jws({ ...goodHeader, alg: 'RS512' }), 'badSignatureAlgorithm'],
    ['no alg', jws({ ...goodHeader, alg: undefined }), 'badSignatureAlgorithm'],
    ['both jwk and kid', jws({ ...goodHeader, kid: 'x' }), 'malformed'],
    ['neither jwk nor kid', jws({ ...goodHeader, jwk: undefined }), 'malformed'],
    ['no url', jws({ ...goodHeader, url: undefined }), 'malformed'],
    ['no nonce', jws({ ...goodHeader, nonce: undefined }), 'badNonce'],
    ['an empty nonce', jws({ ...goodHeader, nonce: '' }), 'badNonce'],
    ['a jwk that is a string', jws({ ...goodHeader, jwk: 'key' }), 'malformed'],
    ['an unprotected header', jws(goodHeader, { header: { kid: 'x' } }), 'malformed'],
    [
      'padding in base64url',
      JSON.stringify({ protected: `${b64(goodHeader)}=`, payload: '', signature: 'AA' }),
      'malformed',
    ],
    ['a header array', jws([1]), 'malformed'],
  ])('%s: %s', (_name, body, expected) => {
    expect(typeOf(() => parseJws(body))).toBe(expected);
  });
});

describe('checkPublicJwk: account keys', () => {
  const rsa = (bits: number) =>
    generateKeyPairSync('rsa', { modulusLength: bits }).publicKey.export({ format: 'jwk' }) as JWK;
  it.each([
    ['P-256 with ES256', newAcmeKey('ec-p256').jwk, 'ES256', 'accepted'],
    ['P-384 with ES384', newAcmeKey('ec-p384').jwk, 'ES384', 'accepted'],
    ['RSA-2048 with RS256', newAcmeKey('rsa-2048').jwk, 'RS256', 'accepted'],
    ['P-256 with ES384', newAcmeKey('ec-p256').jwk, 'ES384', 'badSignatureAlgorithm'],
    ['RSA with ES256', newAcmeKey('rsa-2048').jwk, 'ES256', 'badSignatureAlgorithm'],
    ['RSA-1024', rsa(1024), 'RS256', 'badPublicKey'],
    ['a private key', { ...newAcmeKey().jwk, d: 'secret' }, 'ES256', 'badPublicKey'],
    ['a symmetric key', { kty: 'oct', k: 'c2VjcmV0' }, 'ES256', 'badPublicKey'],
    ['Ed25519', { kty: 'OKP', crv: 'Ed25519', x: 'AAAA' }, 'ES256', 'badPublicKey'],
    ['P-521', { kty: 'EC', crv: 'P-521', x: 'AA', y: 'AA' }, 'ES256', 'badPublicKey'],
  ] as [string, JWK, 'ES256' | 'ES384' | 'RS256', string][])('%s: %s', (_name, jwk, alg, expected) => {
    expect(typeOf(() => checkPublicJwk(jwk, alg))).toBe(expected);
  });

  it('keeps only the public members of a key', () => {
    const jwk = { ...newAcmeKey().jwk, kid: 'x', use: 'sig' };
    expect(Object.keys(checkPublicJwk(jwk, 'ES256')).sort()).toEqual(['crv', 'kty', 'x', 'y']);
  });
});

describe('verifyJws and the payload', () => {
  it('verifies what the test client signs, refuses a flipped byte, and reads POST-as-GET as no payload', async () => {
    const client = new AcmeClient(async () => new Response(), 'https://ca.example.com/acme/dev/directory');
    const body = await client.sign(
      'https://ca.example.com/acme/dev/new-account',
      { contact: [] },
      { nonce: 'n'.repeat(22), useJwk: true },
    );
    const parsed = parseJws(body);
    expect(readPayload(await verifyJws(parsed, parsed.header.jwk!))).toEqual({ contact: [] });
    const tampered = parseJws(body);
    tampered.jws.payload = b64({ contact: ['mailto:x@example.com'] });
    await expect(verifyJws(tampered, parsed.header.jwk!)).rejects.toMatchObject({ type: 'malformed' });
    expect(readPayload(new Uint8Array())).toBeUndefined();
    expect(typeOf(() => readPayload(new TextEncoder().encode('[1]')))).toBe('malformed');
  });
});

describe('order identifiers (RFC 8555 §7.1.3, RFC 8738 §3)', () => {
  it('normalises names and addresses and drops repeats', () => {
    expect(
      parseOrderIdentifiers([
        { type: 'dns', value: 'WWW.Example.COM' },
        { type: 'dns', value: 'www.example.com' },
        { type: 'ip', value: '2001:DB8:0:0::1' },
        { type: 'dns', value: '*.App.example.com' },
      ]),
    ).toEqual([
      { type: 'dns', value: 'www.example.com' },
      { type: 'ip', value: '2001:db8::1' },
      { type: 'dns', value: '*.app.example.com' },
    ]);
  });

  it('authorizes a wildcard on the name below it', () => {
    expect(authorizationTarget({ type: 'dns', value: '*.app.example.com' })).toEqual({
      type: 'dns',
      value: 'app.example.com',
      wildcard: true,
    });
  });

  it.each([
    ['no identifiers', [], 'malformed'],
    ['not an array', 'www.example.com', 'malformed'],
    ['an entry without a value', [{ type: 'dns' }], 'malformed'],
    ['a name with a space', [{ type: 'dns', value: 'a b.example.com' }], 'rejectedIdentifier'],
    ['an IP address given as a dns name', [{ type: 'dns', value: '192.0.2.1' }], 'rejectedIdentifier'],
    ['an IP with a zone', [{ type: 'ip', value: 'fe80::1%eth0' }], 'rejectedIdentifier'],
    ['a type it does not issue for', [{ type: 'email', value: 'a@example.com' }], 'unsupportedIdentifier'],
    [
      '101 identifiers',
      Array.from({ length: 101 }, (_, i) => ({ type: 'dns', value: `n${i}.example.com` })),
      'rejectedIdentifier',
    ],
  ])('refuses %s with %s', (_name, raw, expected) => {
    expect(typeOf(() => parseOrderIdentifiers(raw))).toBe(expected);
  });
});
