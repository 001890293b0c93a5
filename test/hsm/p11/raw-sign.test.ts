import { constants, createHash, createPublicKey, publicDecrypt, verify } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { MemoryAuditSink } from '../../../src/hsm/memory-store.ts';
import type { EmulatedPartition, PartitionSession } from '../../../src/hsm/partition.ts';
import { HsmError, type KeyInfo } from '../../../src/hsm/types.ts';
import { CA_USER, OFFICER, openMemoryPartition } from '../helpers.ts';

/**
 * Signatures over prepared input (PKCS#11 CKM_ECDSA, CKM_ECDSA_SHA1, CKM_RSA_PKCS,
 * CKM_RSA_PKCS_PSS), checked by Node's own verifier, and the rule that only keys whose purposes
 * are exactly ['other'] make them.
 */

async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof HsmError) return error.rv;
    throw error;
  }
  throw new Error('expected a refusal');
}

const pub = (info: KeyInfo) =>
  createPublicKey({ key: Buffer.from(info.publicKey), format: 'der', type: 'spki' });
const message = Buffer.from('a TLS 1.3 CertificateVerify, say');
const digest = (hash: string, data = message) => createHash(hash).update(data).digest();

/** DigestInfo for SHA-256 (RFC 8017 §9.2 note 1), what CKM_RSA_PKCS signs for TLS 1.2. */
const DIGEST_INFO_SHA256 = Buffer.from('3031300d060960864801650304020105000420', 'hex');

let partition: EmulatedPartition;
let audit: MemoryAuditSink;
let user: PartitionSession;
const keys: Record<string, KeyInfo> = {};

beforeAll(async () => {
  ({ partition, audit } = await openMemoryPartition());
  const officer = partition.openSession();
  await officer.login({ user: OFFICER.name, pin: OFFICER.pin });
  for (const [label, algorithm] of [
    ['p256', 'ecdsa-p256'],
    ['p384', 'ecdsa-p384'],
    ['rsa', 'rsa-2048'],
  ] as const) {
    keys[label] = await officer.createKey({ label, algorithm, purposes: ['other'] });
  }
  keys.ca = await officer.createKey({
    label: 'ca',
    algorithm: 'ecdsa-p256',
    purposes: ['certificate', 'crl'],
  });
  keys.every = await officer.createKey({ label: 'every', algorithm: 'ecdsa-p256' });
  user = partition.openSession();
  await user.login({ user: CA_USER.name, pin: CA_USER.pin });
});

describe('signing prepared input', () => {
  it.each([
    ['p256', 'sha256'],
    ['p256', 'sha384'],
    ['p256', 'sha512'],
    ['p384', 'sha384'],
    ['p384', 'sha256'],
    ['p384', 'sha512'],
  ])('CKM_ECDSA with %s over a %s digest verifies as ECDSA with that hash', async (label, hash) => {
    const signature = await user.signRaw({ key: { label }, mechanism: 'ecdsa-raw', data: digest(hash) });
    expect(signature.length).toBe(label === 'p256' ? 64 : 96);
    expect(verify(hash, message, { key: pub(keys[label]!), dsaEncoding: 'ieee-p1363' }, signature)).toBe(
      true,
    );
  });

  it('makes a fresh ECDSA signature each time (a new nonce), each one valid', async () => {
    const signatures = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const signature = await user.signRaw({
        key: { label: 'p256' },
        mechanism: 'ecdsa-raw',
        data: digest('sha256'),
      });
      expect(verify('sha256', message, { key: pub(keys.p256!), dsaEncoding: 'ieee-p1363' }, signature)).toBe(
        true,
      );
      signatures.add(Buffer.from(signature).toString('hex'));
    }
    expect(signatures.size).toBe(50);
  });

  it('CKM_ECDSA_SHA1 hashes the message with SHA-1 itself', async () => {
    const signature = await user.signRaw({ key: { label: 'p256' }, mechanism: 'ecdsa-sha1', data: message });
    expect(verify('sha1', message, { key: pub(keys.p256!), dsaEncoding: 'ieee-p1363' }, signature)).toBe(
      true,
    );
  });

  it('CKM_RSA_PKCS pads the DigestInfo it is given (PKCS#1 v1.5 type 1)', async () => {
    const data = Buffer.concat([DIGEST_INFO_SHA256, digest('sha256')]);
    const signature = await user.signRaw({ key: { label: 'rsa' }, mechanism: 'rsa-pkcs1-raw', data });
    expect(verify('sha256', message, pub(keys.rsa!), signature)).toBe(true);
    expect(publicDecrypt({ key: pub(keys.rsa!), padding: constants.RSA_PKCS1_PADDING }, signature)).toEqual(
      data,
    );
  });

  it.each([
    ['sha256', 32],
    ['sha256', 0],
    ['sha384', 48],
    ['sha512', 64],
  ] as const)(
    'CKM_RSA_PKCS_PSS over a %s digest with a %d-octet salt verifies as RSASSA-PSS',
    async (hash, saltLength) => {
      const signature = await user.signRaw({
        key: { label: 'rsa' },
        mechanism: 'rsa-pss-raw',
        data: digest(hash),
        pss: { hash, saltLength },
      });
      const key = { key: pub(keys.rsa!), padding: constants.RSA_PKCS1_PSS_PADDING, saltLength };
      expect(verify(hash, message, key, signature)).toBe(true);
    },
  );

  it('records each signature in the audit log: key, purpose other, mechanism, digest of what was signed', async () => {
    const data = digest('sha256');
    await user.signRaw({ key: { label: 'p256' }, mechanism: 'ecdsa-raw', data });
    expect(audit.events.at(-1)).toMatchObject({
      op: 'sign',
      user: 'ca',
      keyLabel: 'p256',
      purpose: 'other',
      mechanism: 'ecdsa-raw',
      length: 32,
      digest: createHash('sha256').update(data).digest('hex'),
      result: 'ok',
    });
  });
});

describe('who may sign prepared input', () => {
  it.each(['ca', 'every'])(
    'refuses key %s, whose purposes are not exactly other, with CKR_KEY_FUNCTION_NOT_PERMITTED, audited',
    async (label) => {
      const request = { key: { label }, mechanism: 'ecdsa-raw' as const, data: digest('sha256') };
      expect(await refusal(user.signRaw(request))).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED');
      expect(audit.events.at(-1)).toMatchObject({
        op: 'sign',
        keyLabel: label,
        result: 'hsm.key_function_not_permitted',
      });
    },
  );

  it('refuses the officer and a session not logged in', async () => {
    const officer = partition.openSession();
    await officer.login({ user: OFFICER.name, pin: OFFICER.pin });
    const request = { key: { label: 'p256' }, mechanism: 'ecdsa-raw' as const, data: digest('sha256') };
    expect(await refusal(officer.signRaw(request))).toBe('CKR_OPERATION_NOT_PERMITTED');
    expect(await refusal(partition.openSession().signRaw(request))).toBe('CKR_USER_NOT_LOGGED_IN');
  });

  it.each([
    [
      'an RSA mechanism on an EC key',
      { key: { label: 'p256' }, mechanism: 'rsa-pkcs1-raw', data: Buffer.alloc(32) },
      'CKR_KEY_TYPE_INCONSISTENT',
    ],
    [
      'an EC mechanism on an RSA key',
      { key: { label: 'rsa' }, mechanism: 'ecdsa-raw', data: Buffer.alloc(32) },
      'CKR_KEY_TYPE_INCONSISTENT',
    ],
    [
      'an empty digest',
      { key: { label: 'p256' }, mechanism: 'ecdsa-raw', data: Buffer.alloc(0) },
      'CKR_DATA_LEN_RANGE',
    ],
    [
      'a digest longer than SHA-512',
      { key: { label: 'p256' }, mechanism: 'ecdsa-raw', data: Buffer.alloc(65) },
      'CKR_DATA_LEN_RANGE',
    ],
    [
      'a DigestInfo too long for the modulus',
      { key: { label: 'rsa' }, mechanism: 'rsa-pkcs1-raw', data: Buffer.alloc(246) },
      'CKR_DATA_LEN_RANGE',
    ],
    [
      'a PSS digest of the wrong size',
      {
        key: { label: 'rsa' },
        mechanism: 'rsa-pss-raw',
        data: Buffer.alloc(20),
        pss: { hash: 'sha256', saltLength: 32 },
      },
      'CKR_DATA_LEN_RANGE',
    ],
    [
      'PSS without its parameters',
      { key: { label: 'rsa' }, mechanism: 'rsa-pss-raw', data: Buffer.alloc(32) },
      'CKR_MECHANISM_PARAM_INVALID',
    ],
    [
      'a PSS salt that does not fit',
      {
        key: { label: 'rsa' },
        mechanism: 'rsa-pss-raw',
        data: Buffer.alloc(64),
        pss: { hash: 'sha512', saltLength: 200 },
      },
      'CKR_MECHANISM_PARAM_INVALID',
    ],
    [
      'an unknown mechanism',
      { key: { label: 'p256' }, mechanism: 'ecdsa-sha256', data: Buffer.alloc(32) },
      'CKR_MECHANISM_INVALID',
    ],
  ])('refuses %s', async (_name, request, rv) => {
    expect(await refusal(user.signRaw(request as never))).toBe(rv);
  });
});
