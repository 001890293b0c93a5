import { createHash, createPublicKey, type KeyObject, sign, verify, X509Certificate } from 'node:crypto';
import { canonicalJson } from '../../lib/canonical-json.ts';
import { HsmError } from '../types.ts';

/**
 * The cluster's membership (issue #23): which members there are, where each listens and the
 * certificate it presents on the members' mutual-TLS links. It lives in the sealed index of every
 * member and travels between them signed by the cluster key (derived from the master key, so only
 * a member can sign one), and a member signs a new one only for a logged-in crypto officer
 * (`signet hsm cluster add-member | remove-member`), whose name it records. A member accepts a
 * membership only with a valid signature, for its own partition, and newer than the one it holds.
 */
export interface Member {
  /** Stable id: stamps user versions and failure counts (replication/versions.ts). */
  id: string;
  /** tls://HOST:PORT where the member listens. */
  url: string;
  /** Its certificate (PEM): what it presents as server and as client on the links. */
  cert: string;
}

export interface Membership {
  partition: string;
  version: number;
  members: Member[];
  /** The officer who signed this version, and when. */
  signedBy: string;
  signedAt: string;
}

export interface SignedMembership {
  membership: Membership;
  /** Ed25519 over the canonical JSON of `membership`, base64. */
  signature: string;
}

const MEMBERSHIP_CONTEXT = 'signet-hsm membership v1';
const PROOF_CONTEXT = 'signet-hsm member proof v1';

/** SHA-256 of a certificate's DER, lowercase hex: how links recognise a member. */
export function certificateFingerprint(pem: string | Buffer): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');
}

const payload = (context: string, value: unknown) => Buffer.from(canonicalJson({ context, value }));

export function signMembership(key: KeyObject, membership: Membership): SignedMembership {
  return {
    membership,
    signature: sign(null, payload(MEMBERSHIP_CONTEXT, membership), key).toString('base64'),
  };
}

const MEMBER_ID = /^[A-Za-z0-9][A-Za-z0-9._:[\]/-]{0,63}$/;

/** The membership in `value` if it is well formed, signed by this cluster's key and for `partition`; else undefined. */
export function readMembership(
  key: KeyObject,
  partition: string,
  value: unknown,
): SignedMembership | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { membership, signature } = value as Partial<SignedMembership>;
  if (typeof signature !== 'string' || typeof membership !== 'object' || membership === null)
    return undefined;
  const m = membership as Membership;
  const wellFormed =
    m.partition === partition &&
    Number.isSafeInteger(m.version) &&
    m.version > 0 &&
    typeof m.signedBy === 'string' &&
    typeof m.signedAt === 'string' &&
    Array.isArray(m.members) &&
    m.members.length <= 32 &&
    m.members.every(
      (member) =>
        typeof member === 'object' &&
        member !== null &&
        typeof member.id === 'string' &&
        MEMBER_ID.test(member.id) &&
        typeof member.url === 'string' &&
        typeof member.cert === 'string',
    );
  if (!wellFormed) return undefined;
  const publicKey = createPublicKey(key);
  if (!verify(null, payload(MEMBERSHIP_CONTEXT, m), publicKey, Buffer.from(signature, 'base64')))
    return undefined;
  return { membership: m, signature };
}

/** A member's proof that it holds the master key: a signature over the asker's fresh nonce. */
export function proveMembership(key: KeyObject, partition: string, nonce: string): string {
  return sign(null, payload(PROOF_CONTEXT, { partition, nonce }), key).toString('base64');
}

export function checkProof(key: KeyObject, partition: string, nonce: string, proof: unknown): boolean {
  if (typeof proof !== 'string') return false;
  return verify(
    null,
    payload(PROOF_CONTEXT, { partition, nonce }),
    createPublicKey(key),
    Buffer.from(proof, 'base64'),
  );
}

export function checkMemberId(id: string): string {
  if (!MEMBER_ID.test(id))
    throw new HsmError('CKR_ARGUMENTS_BAD', 'a member id is 1 to 64 of A-Z a-z 0-9 . _ : - / [ ]');
  return id;
}
