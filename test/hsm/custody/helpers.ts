import { createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import {
  type InitPartitionOptions,
  initPartition,
  type PartitionSecrets,
} from '../../../src/hsm/custody/index.ts';
import type { StoredKeyObject } from '../../../src/hsm/store.ts';

/** Cheap PIN hashes for unit tests (the default costs ~130 ms each). */
export const TEST_PIN_HASH = { ln: 10, r: 8, p: 1 } as const;
export const OFFICER_PIN = 'officer-pin-0001';
export const USER_PIN = 'ca-user-pin-0001';

const made: string[] = [];
afterEach(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temporary folder, removed after the test. */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'signet-custody-'));
  made.push(dir);
  return dir;
}

export async function newPartition(
  overrides: Partial<InitPartitionOptions> = {},
): Promise<{ dir: string; secrets: PartitionSecrets }> {
  const dir = join(tempDir(), 'partition');
  const secrets = await initPartition({
    dir,
    name: 'issuing',
    sealing: { kind: 'secret' },
    officerPin: OFFICER_PIN,
    userPin: USER_PIN,
    pinHash: TEST_PIN_HASH,
    ...overrides,
  });
  return { dir, secrets };
}

/** A key object as the partition would generate it (P-256 by default). */
export function makeKey(label: string, algorithm: 'ecdsa-p256' | 'ed25519' = 'ecdsa-p256'): StoredKeyObject {
  const pair =
    algorithm === 'ed25519'
      ? generateKeyPairSync('ed25519')
      : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    id: randomBytes(8).toString('hex'),
    label,
    algorithm,
    usages: ['sign', 'verify'],
    purposes: ['certificate', 'crl'],
    extractable: false,
    createdAt: '2026-01-01T00:00:00.000Z',
    publicKey: new Uint8Array(pair.publicKey.export({ type: 'spki', format: 'der' })),
    privateKey: new Uint8Array(pair.privateKey.export({ type: 'pkcs8', format: 'der' })),
  };
}

export const fixedClock = (iso = '2026-03-01T12:00:00.000Z') => ({ now: () => new Date(iso) });

/** A private key as bytes in every encoding that could leak: DER, the raw secret, base64, hex. */
export function keyForms(pkcs8: Uint8Array): Buffer[] {
  const der = Buffer.from(pkcs8);
  const jwk = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ format: 'jwk' });
  const raw = [jwk.d, jwk.p, jwk.q]
    .filter((v): v is string => typeof v === 'string')
    .map((v) => Buffer.from(v, 'base64url'));
  const forms: Buffer[] = [];
  for (const bytes of [der, ...raw]) {
    forms.push(bytes, Buffer.from(bytes.toString('base64')), Buffer.from(bytes.toString('base64url')));
    forms.push(Buffer.from(bytes.toString('hex')), Buffer.from(bytes.toString('hex').toUpperCase()));
  }
  return forms;
}
