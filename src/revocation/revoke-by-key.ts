import { createPublicKey, type KeyObject } from 'node:crypto';
import type { Clock } from '../lib/clock.ts';
import { refusal } from '../lib/errors.ts';
import { KEY_JWS_ALGORITHMS, verifyKeyJws } from '../lib/key-jws.ts';
import { readCertificateSpki } from './issuer.ts';
import { parseRevocationReason, type RevocationReason } from './reasons.ts';
import type { RevokeResult, RevokeUseCase } from './revoke.usecase.ts';
import { parseRevocationSerial } from './serial.ts';

/**
 * Revocation by proof of possession of the certified key (issue #12; the same idea as ACME's
 * revokeCert signed with the certificate key, RFC 8555 §7.6): a compact JWS (RFC 7515) whose
 * protected header carries `alg` and the certificate's public key as `jwk` (RFC 7515 §4.1.3), and
 * whose payload is { "serial", "reason", "iat", "jti" }. Anyone holding the private key may
 * revoke, for any reason, keyCompromise included; nobody else can.
 *
 * Checks, in this order, each with its own code (the jti is spent only by a request that passed
 * every other check, so a failed attempt cannot burn a legitimate client's jti):
 *
 *   revocation.jws_invalid            not a compact JWS, alg not allowed, no jwk, bad signature
 *   revocation.payload_invalid        payload not the JSON object described above
 *   revocation.reason_invalid         not a supported RFC 5280 reason
 *   revocation.serial_invalid         not a serial
 *   revocation.iat_stale              iat more than 5 minutes from the CA's clock
 *   revocation.certificate_not_found  no issued certificate with that serial
 *   revocation.key_mismatch           the jwk is not the certificate's public key
 *   revocation.jti_replayed           this key already used this jti
 */

/** JWS algorithms accepted (RFC 7518 §3.1, RFC 8037 §3.1; Ed25519 is RFC 9864's fully specified name). */
export const KEY_REVOCATION_ALGORITHMS = KEY_JWS_ALGORITHMS;

/** How far iat may be from the CA's clock, either way. */
export const IAT_WINDOW_MS = 5 * 60_000;

const MAX_JWS_LENGTH = 16 * 1024;

export interface KeyRevocationRequest {
  serial: string;
  reason: RevocationReason;
  iat: Date;
  jti: string;
  /** The JWS alg that signed it. */
  alg: string;
  /** RFC 7638 SHA-256 thumbprint of the jwk, base64url: the replay scope. */
  thumbprint: string;
}

/** The certificates repository's `findBySerial` (src/db/certificates.repository.ts). */
export interface CertificateDerSource {
  /** `der` is null while a reservation is pending. */
  findBySerial(serial: string): Promise<{ der: Uint8Array | null } | null | undefined>;
}

/**
 * Records a jti once (the db's replay_guard table, primary key (scope, jti)). Answers true the
 * first time, false when it was already there. Must be atomic (an INSERT ... ON CONFLICT DO
 * NOTHING), so that two concurrent replays cannot both pass.
 */
export type ConsumeJti = (entry: { scope: string; jti: string; expiresAt: Date }) => Promise<boolean>;

export interface RevokeByKeyDeps {
  certificates: CertificateDerSource;
  consumeJti: ConsumeJti;
  revocations: RevokeUseCase;
  clock: Clock;
}

const refuse = refusal('revocation');

/**
 * Verifies the JWS and its payload against the certificate it names. Does not spend the jti and
 * does not revoke: `createRevokeByKey` does both.
 */
export async function verifyKeyRevocation(
  jws: unknown,
  { certificates, clock }: Pick<RevokeByKeyDeps, 'certificates' | 'clock'>,
): Promise<KeyRevocationRequest & { publicKey: KeyObject }> {
  const verified = await verifyKeyJws(jws, {
    maxLength: MAX_JWS_LENGTH,
    refuse: (code, message, cause) => refuse(code, message, 'invalid', cause),
  });
  const { serial, reason } = verified.payload;
  if (typeof serial !== 'string')
    throw refuse('payload_invalid', 'the payload must name the certificate as "serial" (hex)');
  const { iat, jti } = verified;
  if (reason === undefined) throw refuse('payload_invalid', 'the payload must carry "reason"');
  const parsedReason = parseRevocationReason(reason);
  const canonical = parseRevocationSerial(serial);

  const now = clock.now().getTime();
  if (Math.abs(now - iat.getTime()) > IAT_WINDOW_MS) {
    throw refuse('iat_stale', `iat must be within ${IAT_WINDOW_MS / 60_000} minutes of the current time`);
  }

  const record = await certificates.findBySerial(canonical);
  if (!record?.der) {
    throw refuse('certificate_not_found', `no issued certificate has serial ${canonical}`, 'not_found');
  }
  let certificateKey: KeyObject;
  try {
    certificateKey = createPublicKey({
      key: Buffer.from(readCertificateSpki(record.der)),
      format: 'der',
      type: 'spki',
    });
  } catch (error) {
    throw refuse('key_mismatch', 'the JWS key is not the certificate public key', 'forbidden', error);
  }
  // Compared as keys, not as encodings: an SPKI may carry a compressed or uncompressed EC point.
  if (!certificateKey.equals(verified.publicKey)) {
    throw refuse('key_mismatch', 'the JWS key is not the certificate public key', 'forbidden');
  }
  return {
    serial: canonical,
    reason: parsedReason,
    iat,
    jti,
    alg: verified.alg,
    thumbprint: verified.thumbprint,
    publicKey: verified.publicKey,
  };
}

export interface RevokeByKey {
  /** Verifies the JWS, spends its jti and revokes. Throws AppError revocation.* on refusal. */
  revokeByKey(jws: unknown): Promise<RevokeResult>;
}

export function createRevokeByKey(deps: RevokeByKeyDeps): RevokeByKey {
  return {
    async revokeByKey(jws) {
      const request = await verifyKeyRevocation(jws, deps);
      // The jti must stay spent while its iat is still acceptable: until iat + the window.
      const expiresAt = new Date(request.iat.getTime() + IAT_WINDOW_MS);
      const first = await deps.consumeJti({
        scope: `revoke-by-key:${request.thumbprint}`,
        jti: request.jti,
        expiresAt,
      });
      if (!first) throw refuse('jti_replayed', 'this jti was already used with this key', 'conflict');
      return deps.revocations.revoke({ serial: request.serial, reason: request.reason });
    },
  };
}
