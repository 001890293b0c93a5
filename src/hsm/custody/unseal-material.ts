import { randomBytes, timingSafeEqual } from 'node:crypto';
import { combine, split } from 'shamir-secret-sharing';
import { HsmError } from '../types.ts';
import { fromBase64Url, sha256Hex, toBase64Url } from './codec.ts';

/**
 * What unseals a partition. The partition's master key is sealed under a key derived from a
 * 32-byte random unseal key; custodians hold that unseal key either whole (the "secret") or
 * split M-of-N with Shamir's scheme over GF(2^8) (the "shares"). Both travel as one-line text
 * files that name their partition, so a file from another partition is refused by name, and
 * carry a short checksum, so a mistyped or damaged file is refused before any decryption.
 */
export const UNSEAL_KEY_BYTES = 32;
export const MAX_SHARES = 255;

const SECRET_TAG = 'signet-hsm-secret:v1';
const SHARE_TAG = 'signet-hsm-share:v1';

export interface ShareInfo {
  partitionId: string;
  threshold: number;
  count: number;
  /** 1-based position in the set the partition handed out. */
  index: number;
  /** shamir-secret-sharing's encoding: the y values followed by the x coordinate. */
  bytes: Uint8Array;
}

export function newUnsealKey(): Buffer {
  return randomBytes(UNSEAL_KEY_BYTES);
}

function checksum(body: string): string {
  return sha256Hex(body).slice(0, 8);
}

export function formatSecret(partitionId: string, name: string, unsealKey: Uint8Array): string {
  const body = `${SECRET_TAG}:${partitionId}:${toBase64Url(unsealKey)}`;
  return [
    `# Signet HSM unseal secret for partition "${name}" (${partitionId}).`,
    '# Anyone holding this file can unseal the partition: keep it offline.',
    `${body}:${checksum(body)}`,
    '',
  ].join('\n');
}

export function formatShare(name: string, share: ShareInfo): string {
  const body = [
    SHARE_TAG,
    share.partitionId,
    share.threshold,
    share.count,
    share.index,
    toBase64Url(share.bytes),
  ].join(':');
  return [
    `# Signet HSM custodian share ${share.index} of ${share.count} for partition "${name}" (${share.partitionId}).`,
    `# Any ${share.threshold} of the ${share.count} shares unseal the partition; fewer reveal nothing.`,
    `${body}:${checksum(body)}`,
    '',
  ].join('\n');
}

function refuse(message: string): never {
  throw new HsmError('CKR_UNSEAL_FAILED', message);
}

/** The one non-comment line of a secret or share file, checksum verified. */
function payloadLine(material: Uint8Array | string, what: string, tag: string): string[] {
  let text: string;
  try {
    text =
      typeof material === 'string' ? material : new TextDecoder('utf-8', { fatal: true }).decode(material);
  } catch {
    refuse(`the ${what} is not text: expected a file written by signet hsm init`);
  }
  const lines = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && !line.startsWith('#'));
  if (lines.length !== 1 || !lines[0]!.startsWith(`${tag}:`)) {
    const other = tag === SECRET_TAG ? SHARE_TAG : SECRET_TAG;
    if (lines.length === 1 && lines[0]!.startsWith(`${other}:`)) {
      refuse(`expected an unseal ${what} but got a ${other === SHARE_TAG ? 'custodian share' : 'secret'}`);
    }
    refuse(`the ${what} is not a Signet ${what} file (no ${tag} line)`);
  }
  const line = lines[0]!;
  const cut = line.lastIndexOf(':');
  const body = line.slice(0, cut);
  const sum = Buffer.from(line.slice(cut + 1));
  const expected = Buffer.from(checksum(body));
  if (sum.length !== expected.length || !timingSafeEqual(sum, expected)) {
    refuse(`the ${what} is damaged: its checksum does not match`);
  }
  return body.slice(tag.length + 1).split(':');
}

function checkPartition(found: string, partitionId: string | undefined, what: string): void {
  if (!/^[0-9a-f]{32}$/.test(found)) refuse(`the ${what} names no valid partition id`);
  if (partitionId !== undefined && found !== partitionId) {
    refuse(`the ${what} belongs to partition ${found}, not to this partition (${partitionId})`);
  }
}

/** Parses a secret file's content; `partitionId` when given must match. */
export function parseSecret(material: Uint8Array | string, partitionId?: string): Buffer {
  const fields = payloadLine(material, 'secret', SECRET_TAG);
  if (fields.length !== 2) refuse('the secret is malformed');
  checkPartition(fields[0]!, partitionId, 'secret');
  let key: Buffer;
  try {
    key = fromBase64Url(fields[1]!, 'secret');
  } catch {
    refuse('the secret is malformed');
  }
  if (key.length !== UNSEAL_KEY_BYTES) refuse('the secret has the wrong length');
  return key;
}

function parseCount(text: string, what: string): number {
  if (!/^[1-9][0-9]{0,2}$/.test(text)) refuse(`the share's ${what} is malformed`);
  return Number(text);
}

export function parseShare(material: Uint8Array | string, partitionId?: string): ShareInfo {
  const fields = payloadLine(material, 'share', SHARE_TAG);
  if (fields.length !== 5) refuse('the share is malformed');
  const [id, thresholdText, countText, indexText, data] = fields as [string, string, string, string, string];
  checkPartition(id, partitionId, 'share');
  const threshold = parseCount(thresholdText, 'threshold');
  const count = parseCount(countText, 'count');
  const index = parseCount(indexText, 'index');
  if (threshold < 2 || count > MAX_SHARES || threshold > count || index > count) {
    refuse('the share is malformed: its threshold, count and index are inconsistent');
  }
  let bytes: Buffer;
  try {
    bytes = fromBase64Url(data, 'share');
  } catch {
    refuse('the share is malformed');
  }
  if (bytes.length !== UNSEAL_KEY_BYTES + 1) refuse('the share has the wrong length');
  return { partitionId: id, threshold, count, index, bytes };
}

/** Splits the unseal key into `count` shares, any `threshold` of which recombine it. */
export async function splitUnsealKey(
  unsealKey: Uint8Array,
  { partitionId, count, threshold }: { partitionId: string; count: number; threshold: number },
): Promise<ShareInfo[]> {
  if (!Number.isInteger(count) || !Number.isInteger(threshold) || threshold < 2 || count > MAX_SHARES) {
    throw new HsmError('CKR_ARGUMENTS_BAD', `shares must satisfy 2 <= threshold <= shares <= ${MAX_SHARES}`);
  }
  if (threshold > count)
    throw new HsmError('CKR_ARGUMENTS_BAD', 'threshold cannot exceed the number of shares');
  // The library checks `constructor === Uint8Array`: a Buffer must be copied into a plain array.
  const secret = Uint8Array.from(unsealKey);
  try {
    const parts = await split(secret, count, threshold);
    return parts.map((bytes, i) => ({ partitionId, threshold, count, index: i + 1, bytes }));
  } finally {
    secret.fill(0);
  }
}

/**
 * Recombines shares into the unseal key. It refuses shares of another partition or set, repeated
 * shares and too few shares by name. A wrong share of the right set yields a wrong key, which the
 * seal's authentication tag then refuses (the caller reports that as a failed unseal).
 */
export async function combineShares(
  shares: ShareInfo[],
  expected: { partitionId: string; threshold: number; count: number },
): Promise<Buffer> {
  const seen = new Set<number>();
  const xs = new Set<number>();
  for (const share of shares) {
    checkPartition(share.partitionId, expected.partitionId, `share ${share.index}`);
    if (share.threshold !== expected.threshold || share.count !== expected.count) {
      refuse(
        `share ${share.index} is from a ${share.threshold}-of-${share.count} set; this partition uses ${expected.threshold}-of-${expected.count}`,
      );
    }
    if (seen.has(share.index)) refuse(`share ${share.index} was given more than once`);
    seen.add(share.index);
    xs.add(share.bytes[share.bytes.length - 1]!);
  }
  if (shares.length < expected.threshold) {
    refuse(`${expected.threshold} shares are needed to unseal, ${shares.length} given`);
  }
  // Two different share indexes with the same x coordinate cannot both be genuine.
  if (xs.size !== shares.length) refuse('two of the shares are copies of one share');
  const parts = shares.map((share) => Uint8Array.from(share.bytes));
  try {
    const secret = await combine(parts);
    const key = Buffer.from(secret);
    secret.fill(0);
    return key;
  } finally {
    for (const part of parts) part.fill(0);
  }
}
