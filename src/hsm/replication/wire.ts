import type { KeyObject } from 'node:crypto';
import { canonicalJson } from '../../lib/canonical-json.ts';
import { fromBase64, toBase64 } from '../custody/codec.ts';
import { checkUser, userFields } from '../custody/objects.ts';
import { open, seal } from '../custody/seal.ts';
import type { UserRecord } from '../store.ts';
import { HsmError } from '../types.ts';
import type { VersionStamp } from './versions.ts';

/**
 * What members send each other (issue #23). Key objects travel as their sealed files, byte for
 * byte (the private key under the master key, the attributes bound to it as associated data);
 * users, with their PIN hashes and lockout counts, travel sealed under the same key. Nothing
 * crosses a link in the clear but ids, labels, versions and the membership's certificates.
 */
export interface PeerState {
  /** The sender's signed membership (replication/membership.ts). */
  membership: unknown;
  /** Ids of the keys it holds. */
  keys: string[];
  /** Keys destroyed: id -> label and time. */
  tombstones: Record<string, { label: string; destroyedAt: string }>;
  /** Users and user tombstones, sealed (sealUsers). */
  users: { nonce: string; sealed: string };
  /**
   * Certificates stored beside keys (issue #26): key id -> label, DER (base64), when stored. Public
   * data; of two certificates of one key the one stored last is kept.
   */
  certificates?: Record<string, { label: string; der: string; storedAt: string }>;
}

export interface UsersSnapshot {
  users: UserRecord[];
  deleted: Record<string, VersionStamp>;
}

const usersAad = (partition: string) =>
  Buffer.from(canonicalJson({ format: 'signet-hsm users', v: 1, partition }));

export function sealUsers(key: KeyObject, partition: string, snapshot: UsersSnapshot): PeerState['users'] {
  const plaintext = Buffer.from(
    JSON.stringify({ users: snapshot.users.map(userFields), deleted: snapshot.deleted }),
  );
  const { nonce, sealed } = seal(key, plaintext, usersAad(partition));
  plaintext.fill(0);
  return { nonce: toBase64(nonce), sealed: toBase64(sealed) };
}

/** Opens a peer's users; anything that does not authenticate under this master key is refused. */
export function openUsers(key: KeyObject, partition: string, value: unknown): UsersSnapshot {
  const refuse = (): never => {
    throw new HsmError(
      'CKR_INTEGRITY_FAILED',
      "a member's users do not open under this cluster's master key",
    );
  };
  if (typeof value !== 'object' || value === null) refuse();
  let plaintext: Buffer | undefined;
  try {
    const { nonce, sealed } = value as { nonce: unknown; sealed: unknown };
    plaintext = open(
      key,
      { nonce: fromBase64(nonce, 'nonce'), sealed: fromBase64(sealed, 'sealed') },
      usersAad(partition),
    );
  } catch {
    refuse();
  }
  if (!plaintext) return refuse();
  try {
    const parsed = JSON.parse(plaintext.toString('utf8')) as UsersSnapshot;
    for (const user of parsed.users) checkUser(user);
    for (const stamp of Object.values(parsed.deleted)) {
      if (!Number.isSafeInteger(stamp.version) || typeof stamp.origin !== 'string') refuse();
    }
    return parsed;
  } catch {
    return refuse();
  } finally {
    plaintext.fill(0);
  }
}
