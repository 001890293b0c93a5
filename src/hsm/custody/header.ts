import { timingSafeEqual } from 'node:crypto';
import { PARTITION_NAME } from '../key-uri.ts';
import { HsmError } from '../types.ts';
import { canonicalJson, fromBase64, isRecord, sha256Hex, toBase64 } from './codec.ts';
import {
  aesKey,
  deriveKeyBytes,
  derivePartitionKeys,
  open,
  type PartitionKeys,
  type Sealed,
  seal,
} from './seal.ts';
import { combineShares, parseSecret, parseShare } from './unseal-material.ts';

/**
 * partition.json: the one file read before unsealing. It names the partition, says how the
 * master key is sealed and holds it sealed, plus the audit log's public verification key. Every
 * other field is bound to the sealed master key as associated data, so an altered header cannot
 * be unsealed; a checksum names the file when a byte flips by accident.
 */
export const HEADER_FILE = 'partition.json';
const FORMAT = 'signet-hsm-partition';

export type Sealing = { kind: 'secret' } | { kind: 'shares'; threshold: number; shares: number };

export interface PartitionHeader {
  format: typeof FORMAT;
  v: 1;
  /** 16 random bytes, lowercase hex: the partition's identity, kept by its clones. */
  id: string;
  name: string;
  createdAt: string;
  sealing: Sealing;
  /** How the key-encryption key comes from the unseal key. */
  kdf: 'hkdf-sha256';
  /** Ed25519 SubjectPublicKeyInfo (base64) that verifies the audit log's signed head. */
  auditKey: string;
  masterKey: { nonce: string; sealed: string };
  checksum: string;
}

/** Material that unseals: the content of a secret file, or the contents of share files. */
export interface UnsealMaterial {
  secret?: Uint8Array | string;
  shares?: (Uint8Array | string)[];
}

export { PARTITION_NAME };

function bound(header: Omit<PartitionHeader, 'masterKey' | 'checksum'> | PartitionHeader) {
  const { format, v, id, name, createdAt, sealing, kdf, auditKey } = header;
  return { format, v, id, name, createdAt, sealing, kdf, auditKey };
}

function headerChecksum(header: Omit<PartitionHeader, 'checksum'>): string {
  return sha256Hex(canonicalJson({ ...bound(header), masterKey: header.masterKey }));
}

function kek(unsealKey: Uint8Array, id: string) {
  return aesKey(deriveKeyBytes(unsealKey, Buffer.from(id, 'hex'), 'signet-hsm kek v1'));
}

export function sealHeader(
  fields: Omit<PartitionHeader, 'format' | 'v' | 'kdf' | 'masterKey' | 'checksum'>,
  masterKey: Uint8Array,
  unsealKey: Uint8Array,
): PartitionHeader {
  const base = { format: FORMAT, v: 1, kdf: 'hkdf-sha256', ...fields } as const;
  const sealed = seal(kek(unsealKey, fields.id), masterKey, Buffer.from(canonicalJson(bound(base))));
  const withKey = { ...base, masterKey: { nonce: toBase64(sealed.nonce), sealed: toBase64(sealed.sealed) } };
  return { ...withKey, checksum: headerChecksum(withKey) };
}

export function serializeHeader(header: PartitionHeader): string {
  return `${JSON.stringify(header, null, 2)}\n`;
}

function integrity(file: string, why: string): never {
  throw new HsmError('CKR_INTEGRITY_FAILED', `${file} ${why}`);
}

function isSealing(value: unknown): value is Sealing {
  if (!isRecord(value)) return false;
  if (value.kind === 'secret') return Object.keys(value).length === 1;
  return (
    value.kind === 'shares' &&
    Object.keys(value).length === 3 &&
    Number.isInteger(value.threshold) &&
    Number.isInteger(value.shares) &&
    (value.threshold as number) >= 2 &&
    (value.threshold as number) <= (value.shares as number) &&
    (value.shares as number) <= 255
  );
}

/** Parses and checks partition.json; anything unexpected is an integrity failure naming the file. */
export function parseHeader(bytes: Uint8Array, file: string): PartitionHeader {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    integrity(file, 'is not valid JSON: it was damaged or altered');
  }
  if (!isRecord(value) || value.format !== FORMAT) integrity(file, 'is not a Signet partition header');
  if (value.v !== 1) integrity(file, `has unsupported version ${String(value.v)}`);
  const { id, name, createdAt, sealing, kdf, auditKey, masterKey, checksum } = value;
  if (
    Object.keys(value).length !== 10 ||
    typeof id !== 'string' ||
    !/^[0-9a-f]{32}$/.test(id) ||
    typeof name !== 'string' ||
    !PARTITION_NAME.test(name) ||
    typeof createdAt !== 'string' ||
    !isSealing(sealing) ||
    kdf !== 'hkdf-sha256' ||
    typeof auditKey !== 'string' ||
    !isRecord(masterKey) ||
    typeof masterKey.nonce !== 'string' ||
    typeof masterKey.sealed !== 'string' ||
    typeof checksum !== 'string'
  ) {
    integrity(file, 'has missing or malformed fields: it was damaged or altered');
  }
  const header = value as unknown as PartitionHeader;
  // Byte-exact: any change to the file, even one JSON would ignore, is refused.
  if (!Buffer.from(serializeHeader(header)).equals(Buffer.from(bytes))) {
    integrity(file, 'is not in its canonical form: it was damaged or altered');
  }
  const expected = Buffer.from(headerChecksum(header));
  const given = Buffer.from(checksum);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
    integrity(file, 'fails its checksum: it was damaged or altered');
  }
  return header;
}

function sealedMasterKey(header: PartitionHeader): Sealed {
  try {
    return {
      nonce: fromBase64(header.masterKey.nonce, 'nonce'),
      sealed: fromBase64(header.masterKey.sealed, 'key'),
    };
  } catch {
    integrity(HEADER_FILE, 'holds a malformed sealed master key');
  }
}

/** Recovers the unseal key from the material, checking it belongs to this partition. */
export async function unsealKeyFrom(header: PartitionHeader, material: UnsealMaterial): Promise<Buffer> {
  const { sealing, id } = header;
  if (sealing.kind === 'secret') {
    if (material.secret === undefined) {
      throw new HsmError(
        'CKR_UNSEAL_FAILED',
        'this partition is sealed under a secret: give the secret file',
      );
    }
    return parseSecret(material.secret, id);
  }
  if (!material.shares || material.shares.length === 0) {
    throw new HsmError(
      'CKR_UNSEAL_FAILED',
      `this partition is sealed under ${sealing.threshold}-of-${sealing.shares} custodian shares: give ${sealing.threshold} share files`,
    );
  }
  const shares = material.shares.map((share) => parseShare(share, id));
  return combineShares(shares, { partitionId: id, threshold: sealing.threshold, count: sealing.shares });
}

/** The master key, or HsmError CKR_UNSEAL_FAILED when the material does not open this header's seal. */
export async function unsealMasterKey(header: PartitionHeader, material: UnsealMaterial): Promise<Buffer> {
  const unsealKey = await unsealKeyFrom(header, material);
  try {
    const masterKey = open(
      kek(unsealKey, header.id),
      sealedMasterKey(header),
      Buffer.from(canonicalJson(bound(header))),
    );
    if (!masterKey) {
      throw new HsmError(
        'CKR_UNSEAL_FAILED',
        header.sealing.kind === 'secret'
          ? 'the secret does not open this partition'
          : 'the shares do not open this partition: at least one share is wrong',
      );
    }
    return masterKey;
  } finally {
    unsealKey.fill(0);
  }
}

/** The partition's keys from the unseal material; the master key they derive from is wiped at once. */
export async function unsealPartitionKeys(
  header: PartitionHeader,
  material: UnsealMaterial,
): Promise<PartitionKeys> {
  const masterKey = await unsealMasterKey(header, material);
  try {
    return derivePartitionKeys(masterKey, Buffer.from(header.id, 'hex'));
  } finally {
    masterKey.fill(0);
  }
}
