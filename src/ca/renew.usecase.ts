import { type KeyObject, X509Certificate } from 'node:crypto';
import type { CertificateRecord } from '../db/certificates.repository.ts';
import type { Clock } from '../lib/clock.ts';
import { refusal } from '../lib/errors.ts';
import { verifyKeyJws } from '../lib/key-jws.ts';
import { parseRequestSerial } from '../lib/serial.ts';
import type { IssuerSet } from './issuers.ts';
import type { CertificateAuthority, IssuedCertificate } from './types.ts';

/**
 * Renewal authenticated by the certificate itself (issue #32), as step-ca's `step ca renew`:
 * whoever holds the key of a certificate Signet issued may get a new certificate for the same
 * names under the same policy, re-checked against the policy as it is now. Two proofs of
 * possession:
 *
 * - a compact JWS (RFC 7515) signed by the certificate's key, its public key in the protected
 *   header as `jwk` (src/lib/key-jws.ts, as revocation by key possession), payload
 *   `{ "serial", "iat", "jti", "csr"? }`. It works over plain HTTP: the CSR of a re-key is
 *   inside the signed payload, so nobody on the way can swap in their own key.
 * - mutual TLS with the certificate (the TLS handshake proved the key). The chain is checked
 *   here, against the issuer that signed it, whatever the certificate's EKU: Node's
 *   `socket.authorized` refuses a serverAuth-only certificate presented as a client.
 *
 * Refusals, each with its code:
 *
 *   renew.jws_invalid                not a compact JWS, alg not allowed, no jwk, bad signature
 *   renew.payload_invalid            payload not the JSON object described above
 *   renew.serial_mismatch            the payload names another certificate than the URL
 *   renew.iat_stale                  iat more than 5 minutes from the CA's clock
 *   renew.certificate_not_found      no issued certificate with that serial (404)
 *   renew.key_mismatch               the JWS key is not the certificate's key (403)
 *   renew.client_certificate_invalid the TLS client certificate is not that certificate (403)
 *   renew.jti_replayed               this key already used this jti (409)
 *   renew.certificate_revoked        the certificate is revoked (403)
 *   renew.certificate_expired        it expired longer than certificates.renewGrace ago (403)
 */

/** How far iat may be from the CA's clock, either way. */
export const RENEW_IAT_WINDOW_MS = 5 * 60_000;
const MAX_JWS_LENGTH = 96 * 1024;

export interface RenewDeps {
  ca: Pick<CertificateAuthority, 'renew'>;
  certificates: { findBySerial(serial: string): Promise<CertificateRecord | null> };
  /** The issuers loaded on this server: a client certificate must verify under its issuer's key. */
  issuers: Pick<IssuerSet, 'get'>;
  /** Records a jti once (replay_guard); false when it was already there. */
  consumeJti(entry: { scope: string; jti: string; expiresAt: Date }): Promise<boolean>;
  clock: Clock;
  /** certificates.renewGrace: how long after notAfter a certificate may still renew, ms. */
  graceMs: number;
}

export interface Renewed {
  issued: IssuedCertificate;
  /** The serial of the certificate renewed. */
  renewed: string;
}

export interface Renewal {
  /** `serial` is the one in the URL; the JWS must name the same certificate. */
  withJws(serial: string, jws: unknown): Promise<Renewed>;
  /** `clientCertificate` is the DER the TLS handshake proved; `csr` re-keys. */
  withClientCertificate(
    serial: string,
    clientCertificate: Uint8Array,
    csr?: string | Uint8Array,
  ): Promise<Renewed>;
}

const refuse = refusal('renew');

export function createRenewal(deps: RenewDeps): Renewal {
  const { ca, certificates, issuers, clock, graceMs } = deps;

  async function issuedRecord(serial: string): Promise<CertificateRecord & { der: Uint8Array }> {
    const record = await certificates.findBySerial(serial);
    if (!record?.der || (record.status !== 'good' && record.status !== 'revoked')) {
      throw refuse('certificate_not_found', `no issued certificate has serial ${serial}`, 'not_found');
    }
    return record as CertificateRecord & { der: Uint8Array };
  }

  /** Checked after the proof, so that only the key's holder learns why a renewal is refused. */
  function checkRenewable(record: CertificateRecord): void {
    if (record.status === 'revoked') {
      throw refuse('certificate_revoked', `certificate ${record.serial} is revoked`, 'forbidden');
    }
    const expiredFor = clock.now().getTime() - record.notAfter.getTime();
    if (expiredFor > graceMs) {
      throw refuse(
        'certificate_expired',
        `certificate ${record.serial} expired at ${record.notAfter.toISOString()}; renewal is allowed up to certificates.renewGrace after notAfter`,
        'forbidden',
      );
    }
  }

  async function renew(record: CertificateRecord & { der: Uint8Array }, csr?: string | Uint8Array) {
    const issued = await ca.renew({
      certificate: record.der,
      serial: record.serial,
      ...(csr !== undefined ? { csr } : {}),
      policy: record.policy,
      // The new certificate belongs to whoever asked for the first: an issuer key still reads it.
      requester: { id: record.requester, kind: 'certificate', policies: [record.policy] },
    });
    return { issued, renewed: record.serial };
  }

  return {
    async withJws(serial, jws) {
      const canonical = parseRequestSerial(serial);
      const request = await verifyRenewalJws(jws, clock);
      if (request.serial !== canonical) {
        throw refuse('serial_mismatch', `the JWS names certificate ${request.serial}, the URL ${canonical}`);
      }
      const record = await issuedRecord(canonical);
      let certificateKey: KeyObject;
      try {
        certificateKey = new X509Certificate(record.der).publicKey;
      } catch (error) {
        throw new Error(`stored certificate ${canonical} cannot be read`, { cause: error });
      }
      // Compared as keys, not as encodings: an SPKI may carry a compressed or uncompressed EC point.
      if (!certificateKey.equals(request.publicKey)) {
        throw refuse('key_mismatch', 'the JWS key is not the certificate public key', 'forbidden');
      }
      checkRenewable(record);
      // Spent only by a request that passed every other check, so a failed attempt cannot burn it.
      const first = await deps.consumeJti({
        scope: `renew:${request.thumbprint}`,
        jti: request.jti,
        expiresAt: new Date(request.iat.getTime() + RENEW_IAT_WINDOW_MS),
      });
      if (!first) throw refuse('jti_replayed', 'this jti was already used with this key', 'conflict');
      return renew(record, request.csr);
    },

    async withClientCertificate(serial, clientCertificate, csr) {
      const canonical = parseRequestSerial(serial);
      const record = await issuedRecord(canonical);
      // The handshake proved the key of this exact certificate: it must be the one stored under
      // the serial, and verify under the Signet issuer that signed it.
      const issuer = issuers.get(record.issuerId);
      let chained = false;
      try {
        const presented = new X509Certificate(clientCertificate);
        const issuerCertificate = issuer ? new X509Certificate(issuer.certificateDer) : undefined;
        chained =
          Buffer.from(clientCertificate).equals(Buffer.from(record.der)) &&
          issuerCertificate !== undefined &&
          presented.checkIssued(issuerCertificate) &&
          presented.verify(issuerCertificate.publicKey);
      } catch {
        chained = false;
      }
      if (!chained) {
        throw refuse(
          'client_certificate_invalid',
          `the TLS client certificate is not certificate ${canonical} as this CA issued it`,
          'forbidden',
        );
      }
      checkRenewable(record);
      return renew(record, csr);
    },
  };
}

interface RenewalJws {
  serial: string;
  iat: Date;
  jti: string;
  csr?: string;
  publicKey: KeyObject;
  thumbprint: string;
}

async function verifyRenewalJws(jws: unknown, clock: Clock): Promise<RenewalJws> {
  const verified = await verifyKeyJws(jws, {
    maxLength: MAX_JWS_LENGTH,
    refuse: (code, message, cause) => refuse(code, message, 'invalid', cause),
  });
  const { serial, csr } = verified.payload;
  if (typeof serial !== 'string')
    throw refuse('payload_invalid', 'the payload must name the certificate as "serial" (hex)');
  if (csr !== undefined && (typeof csr !== 'string' || csr.length === 0)) {
    throw refuse('payload_invalid', 'the payload\'s "csr", when present, must be a PEM certificate request');
  }
  if (Math.abs(clock.now().getTime() - verified.iat.getTime()) > RENEW_IAT_WINDOW_MS) {
    throw refuse(
      'iat_stale',
      `iat must be within ${RENEW_IAT_WINDOW_MS / 60_000} minutes of the current time`,
    );
  }
  return {
    serial: parseRequestSerial(serial),
    iat: verified.iat,
    jti: verified.jti,
    ...(typeof csr === 'string' ? { csr } : {}),
    publicKey: verified.publicKey,
    thumbprint: verified.thumbprint,
  };
}
