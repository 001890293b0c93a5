/**
 * The issuance unit of work: a batch of signed certificates is stored with their audit events and
 * the links to the idempotent requests that asked for them, in one transaction. All commit or none
 * does, so a certificate is never stored unaudited nor audited unstored, and a batch costs one
 * commit (the issuing core batches concurrent issuances: group commit).
 */

import type { Clock } from '../lib/clock.ts';
import type { AuditEventInput, AuditRepository } from './audit.repository.ts';
import { storeIssuedWithin } from './certificates/issuance.repository.ts';
import type { Db } from './database.ts';
import type { IdempotencyLink, IdempotencyRepository } from './idempotency.repository.ts';
import { type DatabaseObserver, timed } from './observe.ts';

export interface IssuedCertificateToStore {
  serial: string;
  der: Uint8Array;
  /** Appended only when the certificate is stored. */
  event: AuditEventInput;
  /** The Idempotency-Key record of the request, linked only when the certificate is stored. */
  link?: IdempotencyLink;
}

export interface IssuanceUnitOfWork {
  /**
   * Stores the certificates of reserved serials, appends the audit events of those stored and
   * links them to their requests, in one transaction. Lists the serials that were not stored
   * (unknown, or another DER already there); if anything throws, nothing of the batch is stored.
   */
  storeIssued(items: IssuedCertificateToStore[]): Promise<{ notStored: string[] }>;
}

export function createIssuanceUnitOfWork({
  db,
  clock,
  audit,
  idempotency,
  observe,
}: {
  db: Db;
  clock?: Clock;
  audit: Pick<AuditRepository, 'appendWithin'>;
  idempotency?: Pick<IdempotencyRepository, 'linkWithin'>;
  observe?: DatabaseObserver;
}): IssuanceUnitOfWork {
  return {
    async storeIssued(items) {
      return timed(observe, 'certificates.storeIssued', () => storeBatch(items));
    },
  };

  function storeBatch(items: IssuedCertificateToStore[]): Promise<{ notStored: string[] }> {
    return db.transaction(async (tx) => {
      const { notStored } = await storeIssuedWithin(tx, items, clock);
      const failed = new Set(notStored);
      const stored = items.filter((item) => !failed.has(item.serial));
      await audit.appendWithin(
        tx,
        stored.map((item) => item.event),
      );
      const links = stored.flatMap((item) => (item.link ? [item.link] : []));
      if (links.length > 0) await idempotency?.linkWithin(tx, links);
      return { notStored };
    });
  }
}
