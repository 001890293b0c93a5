import type { CertificatesRepository } from '../db/certificates.repository.ts';
import type { Clock } from '../lib/clock.ts';

/**
 * `signet audit reconcile` (issue #6): every certificate-purpose signature the partition made
 * (its audit log records the SHA-256 of what it signed) against the database's TBS hashes.
 *
 * Because an issuance reserves the serial with its TBS hash before it asks for a signature, a
 * signature whose TBS hash matches no row would mean the partition signed something the CA never
 * reserved: a mis-issuance. A good certificate with no matching signature means the log is
 * incomplete (or another partition signed it). A pending row with a signature was signed but never
 * stored (the process died between the two), so it was never returned to anyone: it is reported
 * for revocation. A pending row with neither, older than the grace period, was abandoned before
 * signing: it is marked failed. Pending rows younger than the grace period may still be signing
 * on a running node and are left alone.
 */
export interface PartitionSignature {
  /** SHA-256 (hex) of the signed data: the TBS for a certificate. */
  digest: string;
  keyId?: string;
  time: string;
  /** Which partition log it came from. */
  source: string;
}

export interface ReconcileReport {
  /** Certificate signatures read from the logs, each record once. */
  signaturesExamined: number;
  /**
   * Distinct signatures by purpose and TBS hash (issue #22): a TBS retried on another member of a
   * cluster after the first failed is signed twice, by two members, and counts once.
   */
  signaturesDistinct: number;
  certificatesExamined: number;
  /** Signatures whose TBS hash matches no database row: the partition signed what the CA never reserved. */
  signedWithoutRecord: PartitionSignature[];
  /**
   * Pending rows older than the grace period that the partition signed: signed, never stored, so
   * never returned to anyone. They should be revoked (`revokeUnstored`), in case one ever surfaces.
   */
  signedButNotStored: { serial: string; digest: string }[];
  /** Good or revoked certificates whose TBS hash appears in no partition log examined. */
  certificatesWithoutSignature: { serial: string; digest: string }[];
  /** Pending rows with no signature, older than the grace period: marked failed (dry run: to be). */
  abandonedCleaned: string[];
  /** signedButNotStored rows revoked by this run (dry run: to be). */
  unstoredRevoked: string[];
  /** Pending rows younger than the grace period, left alone: they may still be signing. */
  pendingWithinGrace: number;
}

export interface ReconcileOptions {
  signatures: AsyncIterable<PartitionSignature>;
  certificates: Pick<CertificatesRepository, 'list' | 'markFailed' | 'revoke'>;
  clock: Clock;
  /** Pending rows younger than this may still be signing; default 10 minutes. */
  pendingGraceMs?: number;
  /** Revoke the signedButNotStored rows (reason unspecified), which also owes their CRL. */
  revokeUnstored?: boolean;
  /** Report only; change nothing. The report is the one the same run without it would give. */
  dryRun?: boolean;
}

const hex = (bytes: Uint8Array | null | undefined) => (bytes ? Buffer.from(bytes).toString('hex') : '');

/** Whether anything remains that an operator must act on once the run (or the run it previews) is done. */
export function needsAttention(report: ReconcileReport): boolean {
  const revoked = new Set(report.unstoredRevoked);
  return (
    report.signedWithoutRecord.length > 0 ||
    report.certificatesWithoutSignature.length > 0 ||
    report.signedButNotStored.some((row) => !revoked.has(row.serial))
  );
}

/**
 * One pass over the signatures and one over the rows decides everything; a dry run reports that
 * decision, a real run then carries it out. So a dry run lists exactly what the run would change.
 */
export async function reconcile(options: ReconcileOptions): Promise<ReconcileReport> {
  // Every signature read here is of purpose certificate; the key is its TBS hash, so a TBS signed
  // by two members (a failover retry) is one signature.
  const signed = new Map<string, PartitionSignature>();
  let signaturesExamined = 0;
  for await (const signature of options.signatures) {
    signaturesExamined += 1;
    if (!signed.has(signature.digest)) signed.set(signature.digest, signature);
  }

  const report: ReconcileReport = {
    signaturesExamined,
    signaturesDistinct: signed.size,
    certificatesExamined: 0,
    signedWithoutRecord: [],
    signedButNotStored: [],
    certificatesWithoutSignature: [],
    abandonedCleaned: [],
    unstoredRevoked: [],
    pendingWithinGrace: 0,
  };

  const now = options.clock.now();
  const cutoff = now.getTime() - (options.pendingGraceMs ?? 10 * 60_000);
  const abandoned: string[] = [];
  const accounted = new Set<string>();
  let cursor: string | undefined;
  do {
    const page = await options.certificates.list({
      status: ['good', 'revoked', 'pending', 'failed'],
      limit: 1000,
      ...(cursor ? { cursor } : {}),
    });
    for (const row of page.items) {
      report.certificatesExamined += 1;
      const digest = hex(row.tbsSha256);
      const hasSignature = signed.has(digest);
      if (hasSignature) accounted.add(digest);
      if ((row.status === 'good' || row.status === 'revoked') && !hasSignature) {
        report.certificatesWithoutSignature.push({ serial: row.serial, digest });
      }
      if (row.status !== 'pending') continue;
      if (row.createdAt.getTime() >= cutoff) report.pendingWithinGrace += 1;
      else if (hasSignature) report.signedButNotStored.push({ serial: row.serial, digest });
      else abandoned.push(row.serial);
    }
    cursor = page.nextCursor ?? undefined;
  } while (cursor);

  for (const [digest, signature] of signed) {
    if (!accounted.has(digest)) report.signedWithoutRecord.push(signature);
  }

  const unstored = options.revokeUnstored ? report.signedButNotStored.map((row) => row.serial) : [];
  if (options.dryRun) {
    report.abandonedCleaned = abandoned;
    report.unstoredRevoked = unstored;
    return report;
  }
  for (const serial of abandoned) {
    // False when it stopped being pending meanwhile (stored after all): then it was not cleaned.
    if (await options.certificates.markFailed(serial, 'abandoned before signing (reconcile)')) {
      report.abandonedCleaned.push(serial);
    }
  }
  // Whole seconds, as every revocation time (CRLs and OCSP carry them).
  const revokedAt = new Date(Math.floor(now.getTime() / 1000) * 1000);
  for (const serial of unstored) {
    await options.certificates.revoke(serial, { reason: 'unspecified', revokedAt });
    report.unstoredRevoked.push(serial);
  }
  return report;
}
