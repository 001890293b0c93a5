import { createWriteStream } from 'node:fs';
import { type AuditVerification, exportAuditLog, verifyAuditLog } from '../../hsm/custody/index.ts';
import { CliError, EXIT, parseCommandArgs, UsageError } from '../args.ts';
import { hsmFailure } from './connect.ts';

export const USAGE = `usage: signet hsm audit <verify|export> --dir DIR [options]

  verify --dir DIR [--json]       check the hash chain and the signed head: answers OK, or names
                                  the first broken record (edited, deleted, reordered, truncated)
  export --dir DIR [--out FILE]   write the log as JSON lines (one record per line) to FILE, which
                                  must not exist, or to standard output; exits 1 if it does not verify

Neither needs a secret: the head is checked with the partition's public audit key. Both only read,
so they may run while the partition is served (as its OS user, who alone can read the folder).`;

export function describeVerification(result: AuditVerification): string {
  if (result.ok) {
    const tail = result.unanchored > 0 ? `, ${result.unanchored} after it (chained, not yet signed)` : '';
    const warning = result.warning ? `\nwarning: ${result.warning}` : '';
    return `OK: ${result.records} records, signed head at record ${result.anchoredSeq}${tail}${warning}`;
  }
  const where = [
    result.seq !== undefined ? `record ${result.seq}` : undefined,
    result.line !== undefined ? `line ${result.line}` : undefined,
  ]
    .filter(Boolean)
    .join(', ');
  return `BROKEN (${result.kind}${where ? `, ${where}` : ''}): ${result.reason}`;
}

export async function run(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  if (action === '--help' || action === '-h') {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (!action) throw new UsageError('an action is required: verify or export');
  const { values } = parseCommandArgs(rest, {
    dir: { type: 'string' },
    out: { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (!values.dir) throw new UsageError('--dir DIR is required');
  if (action === 'verify') {
    const result = await verifyAuditLog({ dir: values.dir }).catch((error) => {
      throw hsmFailure(error);
    });
    console.log(values.json ? JSON.stringify(result, null, 2) : describeVerification(result));
    return result.ok ? EXIT.ok : EXIT.failed;
  }
  if (action === 'export') {
    const out = values.out ? createWriteStream(values.out, { flags: 'wx', mode: 0o600 }) : process.stdout;
    if (values.out) {
      await new Promise<void>((resolve, reject) => {
        out.once('open', () => resolve());
        out.once('error', (error: NodeJS.ErrnoException) =>
          reject(
            new CliError(
              error.code === 'EEXIST'
                ? `${values.out} exists: choose another --out`
                : `cannot write ${values.out}: ${error.code}`,
            ),
          ),
        );
      });
    }
    const { records, verification } = await exportAuditLog({ dir: values.dir, out }).catch((error) => {
      throw hsmFailure(error);
    });
    process.stderr.write(`${records} records exported; ${describeVerification(verification)}\n`);
    return verification.ok ? EXIT.ok : EXIT.failed;
  }
  throw new UsageError(`unknown action '${action}': verify or export`);
}
