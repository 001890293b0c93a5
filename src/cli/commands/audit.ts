import { open } from 'node:fs/promises';
import path from 'node:path';
import { type PartitionSignature, reconcile } from '../../ca/reconcile.ts';
import { loadConfig, resolveDataDir, resolveIn } from '../../config/config.ts';
import { createCertificatesRepository } from '../../db/certificates.repository.ts';
import { openDatabase } from '../../db/database.ts';
import { DatabaseLockedError } from '../../db/errors.ts';
import { parseRecord } from '../../hsm/custody/audit-record.ts';
import { AUDIT_LOG_FILE, verifyAuditLog } from '../../hsm/custody/index.ts';
import { systemClock } from '../../lib/clock.ts';
import { CliError, EXIT, parseCommandArgs, UsageError } from '../args.ts';

const USAGE = `usage: signet audit reconcile [--data DIR] [--partition-dir DIR ...] [--grace DURATION_SECONDS]
                             [--dry-run] [--json]

Compares the certificate signatures in each partition's audit log (default: every partition in
signet.yaml; repeat --partition-dir for several nodes' partitions) with the database's TBS
hashes. Reports signatures with no certificate, certificates with no signature, and pending
rows signed but never stored; pending rows with neither, older than the grace period (default
600 s), are marked failed. With the embedded database the server must be stopped first.
Exit 0 when everything is accounted for, 1 otherwise.`;

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
  if (!sub || sub === '--help' || sub === '-h') {
    console.log(USAGE);
    return sub ? EXIT.ok : EXIT.usage;
  }
  if (sub !== 'reconcile') throw new UsageError(`unknown audit command '${sub}'\n\n${USAGE}`);
  const { values } = parseCommandArgs(rest, {
    data: { type: 'string' },
    'partition-dir': { type: 'string', multiple: true },
    grace: { type: 'string' },
    'dry-run': { type: 'boolean' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  const dataDir = resolveDataDir(values.data);
  const config = loadConfig(dataDir);
  const dirs =
    values['partition-dir']?.map((d) => path.resolve(d)) ??
    Object.values(config.partitions).map((p) => resolveIn(dataDir, p.dir));
  const grace = values.grace === undefined ? 600 : Number(values.grace);
  if (!Number.isFinite(grace) || grace < 0) throw new UsageError('--grace takes a number of seconds');

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
        `${error.message}\nsignet audit reconcile needs the server stopped first (embedded database).`,
      );
    }
    throw error;
  }
  try {
    async function* all() {
      for (const dir of dirs) yield* signaturesIn(dir);
    }
    const report = await reconcile({
      signatures: all(),
      certificates: createCertificatesRepository({ db: database.db }),
      clock: systemClock,
      pendingGraceMs: grace * 1000,
      dryRun: values['dry-run'] ?? false,
    });
    if (values.json) {
      console.log(JSON.stringify(report, null, 2));
    } else {
      console.log(
        `examined ${report.signaturesExamined} certificate signatures and ${report.certificatesExamined} database rows`,
      );
      for (const s of report.signedWithoutRecord)
        console.log(`SIGNED WITHOUT RECORD  tbs ${s.digest} at ${s.time} (${s.source})`);
      for (const c of report.certificatesWithoutSignature)
        console.log(`NO SIGNATURE IN LOGS   serial ${c.serial} tbs ${c.digest}`);
      for (const c of report.signedButNotStored)
        console.log(`SIGNED, NEVER STORED   serial ${c.serial} tbs ${c.digest}`);
      for (const serial of report.abandonedCleaned) console.log(`ABANDONED (marked failed) serial ${serial}`);
    }
    const clean = report.signedWithoutRecord.length === 0 && report.certificatesWithoutSignature.length === 0;
    if (clean) console.log('OK: every certificate signature is accounted for');
    return clean ? EXIT.ok : EXIT.failed;
  } finally {
    await database.close();
  }
}
