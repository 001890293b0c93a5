import type { CertificateIssuanceRepository } from './issuance.repository.ts';
import type { CertificateListingRepository } from './listing.repository.ts';
import type { CertificateRevocationRepository } from './revocation.repository.ts';

/**
 * What `signet audit reconcile` (src/ca/reconcile.ts) needs of the certificates: every row with
 * its TBS hash, page by page; to mark an abandoned reservation failed; to revoke a certificate
 * that was signed but never stored. No query of its own: the other consumers' methods, named here
 * so the reconcile's reach is visible in one place.
 */
export type CertificateReconcileRepository = Pick<CertificateListingRepository, 'list'> &
  Pick<CertificateIssuanceRepository, 'markFailed'> &
  Pick<CertificateRevocationRepository, 'revoke'>;
