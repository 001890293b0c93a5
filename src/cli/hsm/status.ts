import type { PartitionStatus } from '../../hsm/types.ts';
import { EXIT, parseCommandArgs } from '../args.ts';
import { CONNECT_OPTIONS, CONNECT_USAGE, withPartition } from './connect.ts';

export const USAGE = `usage: signet hsm status --socket PATH [--user NAME --pin-file FILE] [--json]

Shows a served partition: its state (sealed or unsealed), how it is sealed, its backend and
protocol version; logged in, also the user and the number of keys.

${CONNECT_USAGE}`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, CONNECT_OPTIONS);
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  const status = await withPartition(
    { socket: values.socket, user: values.user, pinFile: values['pin-file'] },
    (partition) => partition.status(),
  );
  console.log(values.json ? JSON.stringify(status, null, 2) : formatStatus(status));
  return EXIT.ok;
}

export function formatStatus(status: PartitionStatus): string {
  const rows: [string, string][] = [
    ['partition', status.name],
    ['state', status.state],
    [
      'backend',
      status.token
        ? `${status.backend} (token ${status.token.label}, module ${status.token.module})`
        : status.backend,
    ],
    ['protocol', String(status.protocolVersion)],
  ];
  if (status.sealing) {
    rows.push([
      'sealing',
      status.sealing.kind === 'secret'
        ? 'unseal secret'
        : `${status.sealing.threshold} of ${status.sealing.shares} custodian shares`,
    ]);
  }
  if (status.user) rows.push(['user', `${status.user.name} (${status.user.role})`]);
  if (status.keyCount !== undefined) rows.push(['keys', String(status.keyCount)]);
  return rows.map(([k, v]) => `${k.padEnd(10)} ${v}`).join('\n');
}
