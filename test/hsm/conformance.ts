import { constants, createPublicKey, randomBytes, verify } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, test } from 'vitest';
import { MECHANISM_SPECS } from '../../src/hsm/mechanisms.ts';
import {
  HsmError,
  KEY_ALGORITHMS,
  type KeyAlgorithm,
  type KeyInfo,
  type KeyManager,
  type KeyRef,
  SIGN_MECHANISMS,
  type SignMechanism,
} from '../../src/hsm/types.ts';
import { hasTool } from '../helpers/tools.ts';
import { opensslVerify } from './helpers.ts';

/**
 * One suite over the KeyManager contract, run against every backend (DESIGN.md "Real HSMs"):
 * today the emulated partition in-process and through its socket, later a PKCS#11 token.
 * A backend supplies a KeyManager allowed to create and destroy keys and one allowed to sign
 * (they may be the same object), and how it spells a key URI.
 */
export interface KeyManagerUnderTest {
  officer: KeyManager;
  user: KeyManager;
  /** The URI of the key with this label, as this backend spells it. */
  uriFor(label: string): string;
  close(): Promise<void>;
}

export interface ConformanceOptions {
  /** Key algorithms the backend offers; default all six. */
  algorithms?: readonly KeyAlgorithm[];
  /** Also verify every signature with the openssl command line. Default true. */
  openssl?: boolean;
  /**
   * A backend whose token lacks `mechanism` (a PKCS#11 token): signing with it must be refused
   * with CKR_MECHANISM_INVALID and a message naming the PKCS#11 mechanism, before anything is signed.
   */
  lacking?: {
    mechanism: SignMechanism;
    algorithm: KeyAlgorithm;
    /** The PKCS#11 name the refusal must mention (CKM_SHA256_RSA_PKCS_PSS...). */
    names: string;
    factory: () => Promise<KeyManagerUnderTest>;
  };
}

const FAMILY: Record<KeyAlgorithm, 'ec' | 'rsa' | 'ed25519'> = {
  'ecdsa-p256': 'ec',
  'ecdsa-p384': 'ec',
  'rsa-2048': 'rsa',
  'rsa-3072': 'rsa',
  'rsa-4096': 'rsa',
  ed25519: 'ed25519',
};

const suits = (algorithm: KeyAlgorithm, mechanism: SignMechanism) =>
  MECHANISM_SPECS[mechanism].family === FAMILY[algorithm];

/** Node's verdict on a signature, with the parameters a mechanism implies. */
export function nodeVerifies(
  spki: Uint8Array,
  mechanism: SignMechanism,
  data: Uint8Array,
  signature: Uint8Array,
  saltLength?: number,
): boolean {
  const key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  const spec = MECHANISM_SPECS[mechanism];
  if (spec.family === 'ed25519') return verify(null, data, key, signature);
  if (spec.family === 'ec') return verify(spec.hash!, data, { key, dsaEncoding: 'ieee-p1363' }, signature);
  if (spec.padding === 'pss') {
    return verify(
      spec.hash!,
      data,
      { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: saltLength ?? spec.hashLength },
      signature,
    );
  }
  return verify(spec.hash!, data, { key, padding: constants.RSA_PKCS1_PADDING }, signature);
}

async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof HsmError) return error.rv;
    throw error;
  }
  throw new Error('expected the operation to be refused');
}

export function runKeyManagerConformance(
  name: string,
  factory: () => Promise<KeyManagerUnderTest>,
  options: ConformanceOptions = {},
): void {
  const algorithms = options.algorithms ?? KEY_ALGORITHMS;
  const withOpenssl = (options.openssl ?? true) && hasTool('openssl', ['version']);
  const pairs = algorithms.flatMap((a) =>
    SIGN_MECHANISMS.filter((m) => suits(a, m)).map((m) => [a, m] as const),
  );
  const mismatches = algorithms.flatMap((a) =>
    SIGN_MECHANISMS.filter((m) => !suits(a, m)).map((m) => [a, m] as const),
  );

  describe(`KeyManager conformance: ${name}`, () => {
    let target: KeyManagerUnderTest;
    const suffix = randomBytes(4).toString('hex');
    const label = (what: string) => `conf-${what}-${suffix}`;
    const keys = new Map<KeyAlgorithm, KeyInfo>();

    beforeAll(async () => {
      target = await factory();
      // Generated together: RSA-4096 takes seconds and the thread pool overlaps them.
      const created = await Promise.all(
        algorithms.map((algorithm) => target.officer.createKey({ label: label(algorithm), algorithm })),
      );
      for (const info of created) keys.set(info.algorithm, info);
    }, 180_000);

    afterAll(async () => {
      if (!target) return;
      for (const info of keys.values()) await target.officer.destroyKey({ id: info.id }).catch(() => {});
      await target.close();
    });

    test.each(algorithms.map((a) => [a]))(
      'creates a %s key whose public key is SPKI of that type',
      (algorithm) => {
        const info = keys.get(algorithm)!;
        expect(info.label).toBe(label(algorithm));
        expect(info.algorithm).toBe(algorithm);
        expect(info.extractable).toBe(false);
        expect(info.usages).toContain('sign');
        expect(info.id).toMatch(/^[0-9a-f]+$/);
        expect(Number.isNaN(Date.parse(info.createdAt))).toBe(false);
        const key = createPublicKey({ key: Buffer.from(info.publicKey), format: 'der', type: 'spki' });
        const details = key.asymmetricKeyDetails!;
        if (algorithm === 'ed25519') expect(key.asymmetricKeyType).toBe('ed25519');
        else if (algorithm.startsWith('rsa')) {
          expect(key.asymmetricKeyType).toBe('rsa');
          expect(details.modulusLength).toBe(Number(algorithm.slice(4)));
        } else {
          expect(key.asymmetricKeyType).toBe('ec');
          expect(details.namedCurve).toBe(algorithm === 'ecdsa-p256' ? 'prime256v1' : 'secp384r1');
        }
      },
    );

    it('finds a key by label, by id and by URI, with the same attributes each way', async () => {
      const info = keys.get(algorithms[0]!)!;
      const byLabel = await target.user.findKey({ label: info.label });
      const byId = await target.user.findKey({ id: info.id });
      const byUri = await target.user.findKey({ uri: target.uriFor(info.label) });
      expect(byLabel).toEqual(info);
      expect(byId).toEqual(info);
      expect(byUri).toEqual(info);
      expect(info.uri).toBe(target.uriFor(info.label));
    });

    it('answers undefined for a key that does not exist', async () => {
      expect(await target.user.findKey({ label: `absent-${suffix}` })).toBeUndefined();
      expect(await target.user.findKey({ id: 'ab'.repeat(16) })).toBeUndefined();
    });

    it('lists every key it created', async () => {
      const listed = await target.user.listKeys();
      for (const info of keys.values()) expect(listed.find((k) => k.id === info.id)).toEqual(info);
    });

    it('returns the same public key from getPublicKey as from createKey', async () => {
      for (const info of keys.values()) {
        expect(Buffer.from(await target.user.getPublicKey({ id: info.id }))).toEqual(
          Buffer.from(info.publicKey),
        );
      }
    });

    test.each(pairs)(
      'signs with a %s key and %s in one part, verifiable by Node and openssl',
      async (algorithm, mechanism) => {
        const info = keys.get(algorithm)!;
        const data = randomBytes(1000);
        const signature = await target.user.sign({
          key: { label: info.label },
          mechanism,
          purpose: 'certificate',
          data,
        });
        expect(nodeVerifies(info.publicKey, mechanism, data, signature)).toBe(true);
        if (withOpenssl)
          expect(opensslVerify({ mechanism, spki: info.publicKey, data, signature })).toBe(true);
        // The same checks fail for another message, so they can fail.
        const other = Buffer.from(data);
        other[0]! ^= 1;
        expect(nodeVerifies(info.publicKey, mechanism, other, signature)).toBe(false);
      },
    );

    test.each(pairs)(
      'signs with a %s key and %s in many parts over more than one frame, verifiable by Node and openssl',
      async (algorithm, mechanism) => {
        const info = keys.get(algorithm)!;
        const data = randomBytes(2.5 * 1024 * 1024);
        // Chunks of uneven sizes, one larger than a frame: the client must split it.
        const chunks = [data.subarray(0, 1), data.subarray(1, 700_000), data.subarray(700_000)];
        const signature = await target.user.signStream({
          key: { id: info.id },
          mechanism,
          purpose: 'crl',
          chunks,
        });
        expect(nodeVerifies(info.publicKey, mechanism, data, signature)).toBe(true);
        if (withOpenssl)
          expect(opensslVerify({ mechanism, spki: info.publicKey, data, signature })).toBe(true);
      },
    );

    it('gives the same deterministic signature in one part and in many (RSA PKCS#1 v1.5, Ed25519)', async () => {
      const data = randomBytes(5000);
      const chunks = async function* () {
        for (let i = 0; i < data.length; i += 777) yield data.subarray(i, i + 777);
      };
      for (const [algorithm, mechanism] of [
        ['rsa-2048', 'rsa-pkcs1-sha256'],
        ['ed25519', 'ed25519'],
      ] as const) {
        const info = keys.get(algorithm);
        if (!info) continue;
        const one = await target.user.sign({ key: { id: info.id }, mechanism, purpose: 'ocsp', data });
        const many = await target.user.signStream({
          key: { id: info.id },
          mechanism,
          purpose: 'ocsp',
          chunks: chunks(),
        });
        expect(Buffer.from(many)).toEqual(Buffer.from(one));
      }
    });

    it('signs a message too large for one frame given to sign() in one piece', async () => {
      const info = keys.get(algorithms[0]!)!;
      const mechanism = SIGN_MECHANISMS.find((m) => suits(info.algorithm, m))!;
      const data = randomBytes(3 * 1024 * 1024);
      const signature = await target.user.sign({ key: { id: info.id }, mechanism, purpose: 'crl', data });
      expect(nodeVerifies(info.publicKey, mechanism, data, signature)).toBe(true);
    });

    test.each([0, 20, 64])('signs RSA-PSS with a salt length of %i octets', async (saltLength) => {
      const info = keys.get('rsa-2048');
      if (!info) return;
      const data = randomBytes(100);
      const signature = await target.user.sign({
        key: { id: info.id },
        mechanism: 'rsa-pss-sha256',
        purpose: 'certificate',
        data,
        saltLength,
      });
      expect(nodeVerifies(info.publicKey, 'rsa-pss-sha256', data, signature, saltLength)).toBe(true);
      if (withOpenssl) {
        expect(
          opensslVerify({ mechanism: 'rsa-pss-sha256', spki: info.publicKey, data, signature, saltLength }),
        ).toBe(true);
      }
    });

    it('refuses a PSS salt length the modulus cannot hold', async () => {
      const info = keys.get('rsa-2048');
      if (!info) return;
      const request = {
        key: { id: info.id },
        mechanism: 'rsa-pss-sha512' as const,
        purpose: 'certificate' as const,
      };
      expect(await refusal(target.user.sign({ ...request, data: Buffer.from('x'), saltLength: 256 }))).toBe(
        'CKR_MECHANISM_PARAM_INVALID',
      );
    });

    it('returns ECDSA signatures as IEEE P1363 r||s of fixed length', async () => {
      for (const [algorithm, length] of [
        ['ecdsa-p256', 64],
        ['ecdsa-p384', 96],
      ] as const) {
        const info = keys.get(algorithm);
        if (!info) continue;
        for (let i = 0; i < 8; i++) {
          const signature = await target.user.sign({
            key: { id: info.id },
            mechanism: 'ecdsa-sha256',
            purpose: 'certificate',
            data: randomBytes(32),
          });
          expect(signature.length).toBe(length);
        }
      }
    });

    it('answers many signatures in flight at once, each verifiable', async () => {
      const info = keys.get(algorithms[0]!)!;
      const mechanism = SIGN_MECHANISMS.find((m) => suits(info.algorithm, m))!;
      const messages = Array.from({ length: 200 }, (_, i) => Buffer.from(`message ${i}`));
      const signatures = await Promise.all(
        messages.map((data) => target.user.sign({ key: { id: info.id }, mechanism, purpose: 'ocsp', data })),
      );
      signatures.forEach((signature, i) => {
        expect(nodeVerifies(info.publicKey, mechanism, messages[i]!, signature)).toBe(true);
      });
    });

    test.each(mismatches)(
      'refuses a %s key with %s (CKR_KEY_TYPE_INCONSISTENT)',
      async (algorithm, mechanism) => {
        const info = keys.get(algorithm)!;
        const request = {
          key: { id: info.id },
          mechanism,
          purpose: 'certificate' as const,
          data: Buffer.from('x'),
        };
        expect(await refusal(target.user.sign(request))).toBe('CKR_KEY_TYPE_INCONSISTENT');
      },
    );

    it('refuses to sign for a purpose the key was not created for (CKR_KEY_FUNCTION_NOT_PERMITTED)', async () => {
      const crlOnly = await target.officer.createKey({
        label: label('crl-only'),
        algorithm: 'ecdsa-p256',
        purposes: ['crl'],
      });
      try {
        expect(crlOnly.purposes).toEqual(['crl']);
        const request = {
          key: { id: crlOnly.id },
          mechanism: 'ecdsa-sha256' as const,
          data: Buffer.from('tbs'),
        };
        expect(await refusal(target.user.sign({ ...request, purpose: 'certificate' }))).toBe(
          'CKR_KEY_FUNCTION_NOT_PERMITTED',
        );
        expect(
          await refusal(
            target.user.signStream({ ...request, purpose: 'ocsp', chunks: [Buffer.from('tbs')] }),
          ),
        ).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED');
        const signature = await target.user.sign({ ...request, purpose: 'crl' });
        expect(nodeVerifies(crlOnly.publicKey, 'ecdsa-sha256', request.data, signature)).toBe(true);
      } finally {
        await target.officer.destroyKey({ id: crlOnly.id });
      }
    });

    it('refuses to sign with a key created only to verify (CKR_KEY_FUNCTION_NOT_PERMITTED)', async () => {
      const verifyOnly = await target.officer.createKey({
        label: label('verify'),
        algorithm: 'ed25519',
        usages: ['verify'],
      });
      try {
        const request = {
          key: { id: verifyOnly.id },
          mechanism: 'ed25519' as const,
          purpose: 'other' as const,
        };
        expect(await refusal(target.user.sign({ ...request, data: Buffer.from('x') }))).toBe(
          'CKR_KEY_FUNCTION_NOT_PERMITTED',
        );
      } finally {
        await target.officer.destroyKey({ id: verifyOnly.id });
      }
    });

    it('never exports a private key (CKR_KEY_UNEXTRACTABLE), to the officer or the user', async () => {
      for (const info of keys.values()) {
        expect(await refusal(target.user.exportKey({ id: info.id }))).toBe('CKR_KEY_UNEXTRACTABLE');
        expect(await refusal(target.officer.exportKey({ label: info.label }))).toBe('CKR_KEY_UNEXTRACTABLE');
      }
    });

    it('refuses to create an extractable key', async () => {
      const request = { label: label('extractable'), algorithm: 'ecdsa-p256' as const, extractable: true };
      expect(await refusal(target.officer.createKey(request))).toBe('CKR_ATTRIBUTE_VALUE_INVALID');
      expect(await target.user.findKey({ label: request.label })).toBeUndefined();
    });

    it('refuses a second key with a label in use (CKR_OBJECT_EXISTS)', async () => {
      const info = keys.get(algorithms[0]!)!;
      expect(await refusal(target.officer.createKey({ label: info.label, algorithm: 'ed25519' }))).toBe(
        'CKR_OBJECT_EXISTS',
      );
    });

    it('lets only one of two concurrent creates with the same label win', async () => {
      const request = { label: label('race'), algorithm: 'ecdsa-p256' as const };
      const results = await Promise.allSettled([
        target.officer.createKey(request),
        target.officer.createKey(request),
      ]);
      const won = results.filter((r) => r.status === 'fulfilled');
      expect(won).toHaveLength(1);
      const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect((lost.reason as HsmError).rv).toBe('CKR_OBJECT_EXISTS');
      await target.officer.destroyKey({ label: request.label });
    });

    it('destroys a key: it is no longer found, listed or usable (CKR_KEY_HANDLE_INVALID)', async () => {
      const doomed = await target.officer.createKey({ label: label('doomed'), algorithm: 'ecdsa-p256' });
      await target.officer.destroyKey({ uri: target.uriFor(doomed.label) });
      expect(await target.user.findKey({ id: doomed.id })).toBeUndefined();
      expect((await target.user.listKeys()).some((k) => k.id === doomed.id)).toBe(false);
      const request = { key: { id: doomed.id }, mechanism: 'ecdsa-sha256' as const, purpose: 'crl' as const };
      expect(await refusal(target.user.sign({ ...request, data: Buffer.from('x') }))).toBe(
        'CKR_KEY_HANDLE_INVALID',
      );
      expect(await refusal(target.officer.destroyKey({ id: doomed.id }))).toBe('CKR_KEY_HANDLE_INVALID');
      expect(await refusal(target.user.getPublicKey({ id: doomed.id }))).toBe('CKR_KEY_HANDLE_INVALID');
    });

    it('fails a multi-part signature whose key is destroyed before it ends', async () => {
      const doomed = await target.officer.createKey({
        label: label('doomed-stream'),
        algorithm: 'ecdsa-p256',
      });
      async function* chunks() {
        yield Buffer.from('first part');
        await target.officer.destroyKey({ id: doomed.id });
        yield Buffer.from('second part');
      }
      const request = { key: { id: doomed.id }, mechanism: 'ecdsa-sha256' as const, purpose: 'crl' as const };
      expect(await refusal(target.user.signStream({ ...request, chunks: chunks() }))).toBe(
        'CKR_KEY_HANDLE_INVALID',
      );
    });

    test.each([
      ['no reference', {}],
      ['two references', { label: 'a', id: 'ab' }],
      ['a label with a space', { label: 'a b' }],
      ['an id that is not hexadecimal', { id: 'xyz' }],
      ['a URI of another scheme', { uri: 'https://example.com/key' }],
      ['a URI with an unknown attribute', { uri: 'hsm:partition=p;label=a;colour=red' }],
    ] as [string, KeyRef][])('refuses a key reference with %s (CKR_ARGUMENTS_BAD)', async (_name, ref) => {
      expect(await refusal(target.user.findKey(ref))).toBe('CKR_ARGUMENTS_BAD');
    });

    test.each([
      ['an unknown algorithm', { label: 'x', algorithm: 'rsa-1024' }],
      ['a label with a slash', { label: 'a/b', algorithm: 'ed25519' }],
      ['an empty purpose list', { label: 'x', algorithm: 'ed25519', purposes: [] }],
      ['an unknown purpose', { label: 'x', algorithm: 'ed25519', purposes: ['email'] }],
    ])('refuses to create a key with %s (CKR_ARGUMENTS_BAD)', async (_name, request) => {
      expect(await refusal(target.officer.createKey(request as never))).toBe('CKR_ARGUMENTS_BAD');
    });

    it('refuses an unknown mechanism (CKR_MECHANISM_INVALID)', async () => {
      const info = keys.get(algorithms[0]!)!;
      const request = {
        key: { id: info.id },
        mechanism: 'ecdsa-sha1',
        purpose: 'crl',
        data: Buffer.from('x'),
      };
      expect(await refusal(target.user.sign(request as never))).toBe('CKR_MECHANISM_INVALID');
    });

    it('returns random bytes of the length asked, different each time', async () => {
      const a = await target.user.generateRandom({ length: 32 });
      const b = await target.user.generateRandom({ length: 32 });
      expect(a).toHaveLength(32);
      expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
      expect(await target.user.generateRandom({ length: 65536 })).toHaveLength(65536);
    });

    test.each([0, -1, 65537, 1.5])('refuses %s random bytes (CKR_ARGUMENTS_BAD)', async (length) => {
      expect(await refusal(target.user.generateRandom({ length }))).toBe('CKR_ARGUMENTS_BAD');
    });

    it.runIf(options.lacking !== undefined)(
      'refuses a mechanism the token lacks (CKR_MECHANISM_INVALID), naming it',
      async () => {
        const lacking = options.lacking!;
        const other = await lacking.factory();
        try {
          const key = await other.officer.createKey({
            label: label('lacking'),
            algorithm: lacking.algorithm,
          });
          try {
            const error = await other.user
              .sign({
                key: { id: key.id },
                mechanism: lacking.mechanism,
                purpose: 'crl',
                data: Buffer.from('x'),
              })
              .then(
                () => undefined,
                (e: unknown) => e,
              );
            expect(error).toBeInstanceOf(HsmError);
            expect((error as HsmError).rv).toBe('CKR_MECHANISM_INVALID');
            expect((error as HsmError).message).toContain(lacking.names);
            // Another mechanism of the same key still signs: the refusal is about the mechanism.
            const fine = SIGN_MECHANISMS.find((m) => m !== lacking.mechanism && suits(lacking.algorithm, m))!;
            const signature = await other.user.sign({
              key: { id: key.id },
              mechanism: fine,
              purpose: 'crl',
              data: Buffer.from('x'),
            });
            expect(nodeVerifies(key.publicKey, fine, Buffer.from('x'), signature)).toBe(true);
          } finally {
            await other.officer.destroyKey({ id: key.id });
          }
        } finally {
          await other.close();
        }
      },
    );

    it('reports itself unsealed in status', async () => {
      const status = await target.user.status();
      expect(status.state).toBe('unsealed');
      expect(typeof status.backend).toBe('string');
    });
  });
}
