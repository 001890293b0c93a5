/** What the OCSP responder reads: a certificate's status, few columns, by serial. */
import { eq } from 'drizzle-orm';
import { normalizeSerial } from '../../lib/serial.ts';
import type { Db } from '../database.ts';
import { type DatabaseObserver, timed } from '../observe.ts';
import { certificates } from '../schema/index.ts';
import type { CertificateStatusInfo } from './types.ts';

export interface CertificateStatusRepository {
  /** The few columns OCSP needs. */
  findStatus(serial: string): Promise<CertificateStatusInfo | null>;
}

export function createCertificateStatusRepository({
  db,
  observe,
}: {
  db: Db;
  observe?: DatabaseObserver;
}): CertificateStatusRepository {
  const repository: CertificateStatusRepository = {
    async findStatus(serial) {
      const rows = await timed(observe, 'certificates.findStatus', () =>
        db
          .select({
            serial: certificates.serial,
            issuerId: certificates.issuerId,
            status: certificates.status,
            notAfter: certificates.notAfter,
            revokedAt: certificates.revokedAt,
            revocationReason: certificates.revocationReason,
            invalidityDate: certificates.invalidityDate,
            statusChangedAt: certificates.statusChangedAt,
          })
          .from(certificates)
          .where(eq(certificates.serial, normalizeSerial(serial))),
      );
      return rows[0] ?? null;
    },
  };
  return repository;
}
