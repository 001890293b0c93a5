import { open } from 'node:fs/promises';
import path from 'node:path';
import {
  needsAttention,
  type PartitionSignature,
  type ReconcileReport,
  reconcile,
} from '../../ca/reconcile.ts';
import { loadConfig, resolveDataDir, resolveIn } from '../../config/config.ts';
import { createCertificatesRepository } from '../../db/certificates.repository.ts';
import { openDatabase } from '../../db/database.ts';
import { DatabaseLockedError } from '../../db/errors.ts';
import { parseRecord } from '../../hsm/custody/audit-record.ts';
import { AUDIT_LOG_FILE, verifyAuditLog } from '../../hsm/custody/index.ts';
import { systemClock } from '../../lib/clock.ts';
import { formatDuration, parseDuration } from '../../lib/duration.ts';
import { CliError, EXIT, parseCommandArgs, UsageError } from '../args.ts';

export const USAGE = `usage: signet audit reconcile [--data DIR] [--partition-dir DIR ...] [--grace DURATION]
                             [--revoke-unstored] [--dry-run] [--json]

Compares the certificate signatures in each partition's audit log (default: every partition in
signet.yaml; repeat --partition-dir for several nodes' partitions) with the database's TBS
hashes. Reports signatures with no certificate, certificates with no signature, and pending
rows signed but never stored. Pending rows older than the grace period (an ISO 8601 duration,
default PT10M; bare seconds are still accepted for this release, with a warning) with no
signature are marked failed; with --revoke-unstored, those signed but never stored are revoked
(reason unspecified) so that they are on the CRL should one ever surface. --dry-run changes
nothing and reports exactly what the same run without it would change. --json prints the report
as JSON and nothing else on standard output. With the embedded database the server must be
stopped first.
Exit 0 when everything is accounted for, 1 otherwise (standard error says what to do).`;

/**
 * --grace as every other duration of Signet is written (ISO 8601: PT10M), or, for one release, as
 * the bare seconds it used to take, with a warning that says how to write it now (issue #33).
 */
function graceSeconds(text: string): number {
  if (/^[0-9]{1,9}$/.test(text)) {
    const seconds = Number(text);
    console.error(
      `signet: warning: --grace ${text} in bare seconds is deprecated and will be refused in the next release; write it as an ISO 8601 duration: --grace ${formatDuration(seconds)}`,
    );
    return seconds;
  }
  const parsed = parseDuration(text);
  if (!parsed.ok) throw new UsageError(`--grace ${text}: ${parsed.reason}`);
  return parsed.seconds;
}

async function* signaturesIn(dir: string): AsyncGenerator<PartitionSignature> {
  const handle = await open(path.join(dir, AUDIT_LOG_FILE), 'r').catch((error: NodeJS.ErrnoException) => {
    throw new CliError(`cannot read the audit log of ${dir}: ${error.code}`);
  });
  try {
    for await (const line of handle.readLines()) {
      const record = parseRecord(line);
      if (typeof record === 'string') continue;
      if (
        (record.op === 'sign' || record.op === 'signFinal') &&
        record.purpose === 'certificate' &&
        record.result === 'ok' &&
        record.digest
      ) {
        yield {
          digest: record.digest,
          time: record.time,
          source: dir,
          ...(record.keyId ? { keyId: record.keyId } : {}),
        };
      }
    }
  } finally {
    await handle.close();
  }
}

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h') {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (!sub) throw new UsageError('a subcommand is required: reconcile');
  if (sub !== 'reconcile') throw new UsageError(`unknown audit command '${sub}'`);
  const { values } = parseCommandArgs(rest, {
    data: { type: 'string' },
    'partition-dir': { type: 'string', multiple: true },
    grace: { type: 'string' },
    'dry-run': { type: 'boolean' },
    'revoke-unstored': { type: 'boolean' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  const grace = values.grace === undefined ? 600 : graceSeconds(values.grace);
  const dataDir = resolveDataDir(values.data);
  const config = loadConfig(dataDir);
  const dirs =
    values['partition-dir']?.map((d) => path.resolve(d)) ??
    Object.values(config.partitions).flatMap((p) =>
      p.members.flatMap((m) => (m.dir === undefined ? [] : [resolveIn(dataDir, m.dir)])),
    );

  for (const dir of dirs) {
    const verification = await verifyAuditLog({ dir });
    if (!verification.ok) {
      throw new CliError(
        `the audit log of ${dir} does not verify; reconcile refuses to trust it: ${JSON.stringify(verification)}`,
      );
    }
  }

  const url = process.env.DATABASE_URL ?? config.database.url;
  let database: Awaited<ReturnType<typeof openDatabase>>;
  try {
    database = await openDatabase(url ? { url } : { dataDir });
  } catch (error) {
    if (error instanceof DatabaseLockedError) {
      throw new CliError(
        `${error.message}\nsignet audit: stop the server first (the embedded database serves one process at a time).`,
      );
    }
    throw error;
  }
  try {
    async function* all() {
      for (const dir of dirs) yield* signaturesIn(dir);
    }
    const dryRun = values['dry-run'] ?? false;
    const report = await reconcile({
      signatures: all(),
      certificates: createCertificatesRepository({ db: database.db }),
      clock: systemClock,
      pendingGraceMs: grace * 1000,
      revokeUnstored: values['revoke-unstored'] ?? false,
      dryRun,
    });
    // Standard output is the report (only JSON with --json); what to do goes to standard error.
    if (values.json) console.log(JSON.stringify(report, null, 2));
    else printReport(report, dryRun);
    for (const line of advice(report, { dryRun, grace })) console.error(line);
    return needsAttention(report) ? EXIT.failed : EXIT.ok;
  } finally {
    await database.close();
  }
}

function printReport(report: ReconcileReport, dryRun: boolean): void {
  const would = dryRun ? 'would be ' : '';
  console.log(
    `examined ${report.signaturesExamined} certificate signatures (${report.signaturesDistinct} distinct TBS) and ${report.certificatesExamined} database rows${dryRun ? ' (dry run: nothing changed)' : ''}`,
  );
  for (const s of report.signedWithoutRecord)
    console.log(`SIGNED WITHOUT RECORD  tbs ${s.digest} at ${s.time} (${s.source})`);
  for (const c of report.certificatesWithoutSignature)
    console.log(`NO SIGNATURE IN LOGS   serial ${c.serial} tbs ${c.digest}`);
  const revoked = new Set(report.unstoredRevoked);
  for (const c of report.signedButNotStored) {
    console.log(
      `SIGNED, NEVER STORED   serial ${c.serial} tbs ${c.digest}${revoked.has(c.serial) ? ` (${would}revoked)` : ''}`,
    );
  }
  for (const serial of report.abandonedCleaned)
    console.log(`ABANDONED (${would}marked failed) serial ${serial}`);
  if (report.pendingWithinGrace > 0) {
    console.log(
      `${report.pendingWithinGrace} pending reservations are within the grace period and were left alone`,
    );
  }
  if (!needsAttention(report)) console.log('OK: every certificate signature is accounted for');
}

/** What the operator should do about what the report found, one sentence per finding. */
function advice(report: ReconcileReport, { dryRun, grace }: { dryRun: boolean; grace: number }): string[] {
  const lines: string[] = [];
  if (report.signedWithoutRecord.length > 0) {
    lines.push(
      `signet: the partition signed ${report.signedWithoutRecord.length} certificate(s) that the database never reserved: treat it as possible mis-issuance. Keep the partition audit logs and find out who used the key (the records above give the time and key).`,
    );
  }
  if (report.certificatesWithoutSignature.length > 0) {
    lines.push(
      `signet: ${report.certificatesWithoutSignature.length} stored certificate(s) have no signature in the logs examined: pass the audit log of every partition that signs for this CA (other nodes' too) with --partition-dir, and check that no log was replaced.`,
    );
  }
  const revoked = new Set(report.unstoredRevoked);
  const unrevoked = report.signedButNotStored.filter((row) => !revoked.has(row.serial));
  if (unrevoked.length > 0) {
    lines.push(
      `signet: ${unrevoked.length} certificate(s) were signed but never stored (the CA stopped between signing and storing; nobody received them). Revoke them so that they are on the CRL should one ever surface: run this command again with --revoke-unstored.`,
    );
  }
  if (report.unstoredRevoked.length > 0 && !dryRun) {
    lines.push(
      `signet: revoked ${report.unstoredRevoked.length} certificate(s) signed but never stored; the server publishes their CRL when it runs.`,
    );
  }
  if (report.pendingWithinGrace > 0 && grace > 0) {
    lines.push(
      `signet: ${report.pendingWithinGrace} pending reservation(s) are younger than the grace period (${formatDuration(grace)}) and were not examined for cleaning: run again later, or with --grace PT0S if no server is running.`,
    );
  }
  return lines;
}
