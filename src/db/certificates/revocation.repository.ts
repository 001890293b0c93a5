/** Revoking a certificate: the revoke rule under a row lock, with the CRL it owes (same transaction). */
import { eq } from 'drizzle-orm';
import { type Clock, systemClock } from '../../lib/clock.ts';
import { normalizeSerial } from '../../lib/serial.ts';
import type { Db } from '../database.ts';
import { CertificateNotFoundError } from '../errors.ts';
import { type DatabaseObserver, timed } from '../observe.ts';
import { staleOcspResponsesWithin } from '../ocsp-responses.repository.ts';
import { crlWorkKey, oweWithin } from '../owed-work.repository.ts';
import { certificates, REVOCATION_REASONS } from '../schema/index.ts';
import { checkDate, checkOneOf } from './shared.ts';
import type { Revocation, RevokeRequest, RevokeResult } from './types.ts';

export interface CertificateRevocationRepository {
  /**
   * Applies the revoke rule (src/revocation/revoke.usecase.ts) under a row lock. A change also owes
   * a CRL for the certificate's issuer shard and its OCSP responses (owed_work, same transaction);
   * `unchanged` owes none.
   */
  revoke(serial: string, request: RevokeRequest): Promise<RevokeResult>;
}

export function createCertificateRevocationRepository({
  db,
  clock = systemClock,
  observe,
}: {
  db: Db;
  clock?: Clock;
  observe?: DatabaseObserver;
}): CertificateRevocationRepository {
  return {
    async revoke(serial, request) {
      return timed(observe, 'certificates.revoke', () => revokeOne(db, clock, serial, request));
    },
  };
}

type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];

async function revokeOne(
  db: Db,
  clock: Clock,
  serial: string,
  request: RevokeRequest,
): Promise<RevokeResult> {
  const canonical = normalizeSerial(serial);
  checkOneOf('reason', request.reason, REVOCATION_REASONS);
  checkDate('revokedAt', request.revokedAt);
  if (request.invalidityDate != null) checkDate('invalidityDate', request.invalidityDate);
  return db.transaction(async (tx) => {
    const rows = await tx
      .select({
        status: certificates.status,
        issuerId: certificates.issuerId,
        crlShard: certificates.crlShard,
        revokedAt: certificates.revokedAt,
        revocationReason: certificates.revocationReason,
        invalidityDate: certificates.invalidityDate,
      })
      .from(certificates)
      .where(eq(certificates.serial, canonical))
      .for('update');
    const row = rows[0];
    // A failed reservation was never signed: there is nothing to revoke.
    if (!row || row.status === 'failed') throw new CertificateNotFoundError(canonical);
    const now = clock.now();
    // Every change below owes a CRL, recorded in this transaction (issue #17): if the process
    // dies once this commits, the next one (or another node) still publishes it.
    // It also owes the serial's pre-signed OCSP responses, signed again (issue #27): marked stale
    // here, every node told at commit, and re-signed by whichever node drains the `ocsp` row.
    const oweCrl = async () => {
      await oweWithin(
        tx,
        [
          { kind: 'crl', key: crlWorkKey(row.issuerId, row.crlShard) },
          { kind: 'ocsp', key: canonical },
        ],
        now,
      );
      await staleOcspResponsesWithin(tx, canonical);
    };
    if (row.status === 'revoked') {
      const existing: Revocation = {
        serial: canonical,
        issuerId: row.issuerId,
        crlShard: row.crlShard,
        revokedAt: row.revokedAt!,
        reason: row.revocationReason!,
        invalidityDate: row.invalidityDate,
      };
      return reviseRevocation(tx, existing, request, now, oweCrl);
    }
    // pending or good. A pending serial may have been signed already: revoking it puts it on
    // the CRL whatever happens next.
    const invalidityDate = request.invalidityDate ?? null;
    await tx
      .update(certificates)
      .set({
        status: 'revoked',
        revokedAt: request.revokedAt,
        revocationReason: request.reason,
        invalidityDate,
        statusChangedAt: now,
      })
      .where(eq(certificates.serial, canonical));
    await oweCrl();
    return {
      outcome: 'revoked',
      revocation: {
        serial: canonical,
        issuerId: row.issuerId,
        crlShard: row.crlShard,
        revokedAt: request.revokedAt,
        reason: request.reason,
        invalidityDate,
      },
    };
  });
}

/**
 * A certificate already revoked. Only a move to keyCompromise changes an existing revocation
 * (CA/B Forum BR §4.9.1.1, RFC 5280 §5.3.1); the revocation date stays, the compromise date goes
 * in invalidityDate.
 */
async function reviseRevocation(
  tx: Tx,
  existing: Revocation,
  request: RevokeRequest,
  now: Date,
  oweCrl: () => Promise<void>,
): Promise<RevokeResult> {
  if (request.reason !== 'keyCompromise' || existing.reason === 'keyCompromise') {
    return { outcome: 'unchanged', revocation: existing };
  }
  const invalidityDate = request.invalidityDate ?? existing.invalidityDate;
  await tx
    .update(certificates)
    .set({ revocationReason: 'keyCompromise', invalidityDate, statusChangedAt: now })
    .where(eq(certificates.serial, existing.serial));
  await oweCrl();
  return {
    outcome: 'reason_updated',
    revocation: { ...existing, reason: 'keyCompromise', invalidityDate },
  };
}
