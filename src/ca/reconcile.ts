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
 * stored (the process died between the two), so it was never returned to anyone. A pending row
 * with neither, older than the grace period, was abandoned before signing: it is marked failed.
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
  signaturesExamined: number;
  certificatesExamined: number;
  /** Signatures whose TBS hash matches no database row: the partition signed what the CA never reserved. */
  signedWithoutRecord: PartitionSignature[];
  /** Rows with a signature that stayed pending: signed, never stored, never returned. */
  signedButNotStored: { serial: string; digest: string }[];
  /** Good or revoked certificates whose TBS hash appears in no partition log examined. */
  certificatesWithoutSignature: { serial: string; digest: string }[];
  /** Pending rows with no signature, older than the grace period: now marked failed. */
  abandonedCleaned: string[];
}

export interface ReconcileOptions {
  signatures: AsyncIterable<PartitionSignature>;
  certificates: Pick<CertificatesRepository, 'list' | 'listPendingOlderThan' | 'markFailed'>;
  clock: Clock;
  /** Pending rows younger than this may still be signing; default 10 minutes. */
  pendingGraceMs?: number;
  /** Report only; change nothing. */
  dryRun?: boolean;
}

const hex = (bytes: Uint8Array | null | undefined) => (bytes ? Buffer.from(bytes).toString('hex') : '');

export async function reconcile(options: ReconcileOptions): Promise<ReconcileReport> {
  const signed = new Map<string, PartitionSignature>();
  let signaturesExamined = 0;
  for await (const signature of options.signatures) {
    signaturesExamined += 1;
    signed.set(signature.digest, signature);
  }

  const report: ReconcileReport = {
    signaturesExamined,
    certificatesExamined: 0,
    signedWithoutRecord: [],
    signedButNotStored: [],
    certificatesWithoutSignature: [],
    abandonedCleaned: [],
  };

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
      if (row.status === 'pending' && hasSignature)
        report.signedButNotStored.push({ serial: row.serial, digest });
    }
    cursor = page.nextCursor ?? undefined;
  } while (cursor);

  for (const [digest, signature] of signed) {
    if (!accounted.has(digest)) report.signedWithoutRecord.push(signature);
  }

  const cutoff = new Date(options.clock.now().getTime() - (options.pendingGraceMs ?? 10 * 60_000));
  for (;;) {
    const stale = await options.certificates.listPendingOlderThan(cutoff, 1000);
    const abandoned = stale.filter((row) => !signed.has(hex(row.tbsSha256)));
    if (abandoned.length === 0) break;
    let changed = 0;
    for (const row of abandoned) {
      if (options.dryRun) {
        report.abandonedCleaned.push(row.serial);
        continue;
      }
      if (await options.certificates.markFailed(row.serial, 'abandoned before signing (reconcile)')) {
        report.abandonedCleaned.push(row.serial);
        changed += 1;
      }
    }
    if (options.dryRun || changed === 0 || stale.length < 1000) break;
  }
  return report;
}
