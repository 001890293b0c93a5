/**
 * Certificates: the ledger that makes issuance crash-safe. An issuance is
 *
 *   reservePending (serial + SHA-256 of the TBS, status pending) -> HSM signs -> markIssued (DER,
 *   status good) -> the certificate is returned,
 *
 * so a crash at any step leaves, at worst, a pending row naming exactly what the HSM may have
 * signed (its TBS hash, which the partition's audit log also records). A serial that is taken
 * fails the reservation (SerialCollisionError); the caller builds a new TBS with a new serial, and
 * a serial, once reserved, is never reused: rows are never deleted.
 */
import type { Clock } from '../lib/clock.ts';
import {
  type CrlEntriesRepository,
  createCrlEntriesRepository,
} from './certificates/crl-entries.repository.ts';
import {
  type CertificateIssuanceRepository,
  createCertificateIssuanceRepository,
} from './certificates/issuance.repository.ts';
import {
  type CertificateListingRepository,
  createCertificateListingRepository,
} from './certificates/listing.repository.ts';
import type { CertificateReconcileRepository } from './certificates/reconcile.repository.ts';
import {
  type CertificateRevocationRepository,
  createCertificateRevocationRepository,
} from './certificates/revocation.repository.ts';
import {
  type CertificateStatusRepository,
  createCertificateStatusRepository,
} from './certificates/status.repository.ts';
import type { Db } from './database.ts';
import type { DatabaseObserver } from './observe.ts';

export type * from './certificates/types.ts';
export type {
  CertificateIssuanceRepository,
  CertificateListingRepository,
  CertificateReconcileRepository,
  CertificateRevocationRepository,
  CertificateStatusRepository,
  CrlEntriesRepository,
};

/**
 * The certificates table is read and written by five consumers, each with its own repository
 * under db/certificates/: issuance (reserve, store, fail), status (OCSP), CRL entries, revocation
 * and listing (the API, the CLI, reconcile). This is all of them over one database handle, for
 * the wiring (src/cli/runtime.ts) and tests; a consumer declares the narrow one it uses.
 */
export type CertificatesRepository = CertificateIssuanceRepository &
  CertificateStatusRepository &
  CrlEntriesRepository &
  CertificateRevocationRepository &
  CertificateListingRepository;

export function createCertificatesRepository(deps: {
  db: Db;
  clock?: Clock;
  /** Told how long the watched operations take (the server's database histogram). */
  observe?: DatabaseObserver;
}): CertificatesRepository {
  return {
    ...createCertificateIssuanceRepository(deps),
    ...createCertificateStatusRepository(deps),
    ...createCrlEntriesRepository(deps),
    ...createCertificateRevocationRepository(deps),
    ...createCertificateListingRepository(deps),
  };
}
