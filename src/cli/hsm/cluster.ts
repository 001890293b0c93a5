import { readFileSync } from 'node:fs';
import path from 'node:path';
import { writeNewFile } from '../../hsm/custody/atomic-file.ts';
import { CliError, EXIT, parseCommandArgs, UsageError } from '../args.ts';
import { issueMemberCertificate } from '../link-certs.ts';
import { CONNECT_OPTIONS, CONNECT_USAGE, withPartition } from './connect.ts';

export const USAGE = `usage: signet hsm cluster <status|add-member|remove-member> --socket PATH [options]

The members of a partition cluster (issue #23) replicate keys, destroyed keys' tombstones, users,
PINs and failed logins among themselves over their mutual-TLS links. Each member runs
'signet hsm serve --dir DIR --listen tls://HOST:PORT --tls-cert ... --tls-key ... --client-ca ...';
these commands reach one member's socket as the crypto officer (--user defaults to officer).

  status                            every member: reachable, sealed or not, keys, a digest of its
                                    key set, its audit head
  add-member --url tls://HOST:PORT --cert FILE [--id ID]
                                    add the member listening at URL, presenting certificate FILE
                                    (PEM). It must be restored from a backup of this cluster and
                                    unsealed: a member whose master key is not the cluster's is
                                    refused. The first add-member also enrols the member asked.
  remove-member --id ID             remove a member (ID or its URL); the others stop talking to it
  member-cert --link-dir DIR --host HOST... --out PREFIX
                                    for a dev setup: a member certificate (serverAuth and
                                    clientAuth) from the link CA 'signet init --partition-listen'
                                    wrote (DIR: its secrets/link), as PREFIX.crt and PREFIX.key (0600)

${CONNECT_USAGE}`;

const OPTIONS = {
  ...CONNECT_OPTIONS,
  url: { type: 'string' },
  cert: { type: 'string' },
  id: { type: 'string' },
  'link-dir': { type: 'string' },
  host: { type: 'string', multiple: true },
  out: { type: 'string' },
} as const;

interface StatusRow {
  id: string;
  url: string;
  self: boolean;
  reachable: boolean;
  state: string;
  keys?: number;
  keySetDigest?: string;
  auditHead?: { seq: number; hash: string } | null;
  error?: string;
}

function formatStatus(status: {
  version: number;
  quorum: number;
  signedBy: string | null;
  members: StatusRow[];
}): string {
  const lines = [
    `membership version ${status.version}${status.signedBy ? ` (signed for ${status.signedBy})` : ''}, quorum ${status.quorum}`,
  ];
  for (const m of status.members) {
    const head = m.auditHead ? `audit #${m.auditHead.seq} ${m.auditHead.hash.slice(0, 12)}` : 'audit -';
    const keys = m.keys === undefined ? '' : `  ${m.keys} keys (${m.keySetDigest})  ${head}`;
    lines.push(
      `${m.self ? '*' : ' '} ${m.id.padEnd(22)} ${m.url.padEnd(26)} ${m.reachable ? m.state : 'unreachable'}${keys}`,
    );
  }
  return lines.join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  if (action === '--help' || action === '-h' || action === undefined) {
    if (action === undefined)
      throw new UsageError('an action is required: status, add-member or remove-member');
    console.log(USAGE);
    return EXIT.ok;
  }
  const { values } = parseCommandArgs(rest, OPTIONS);
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  const connect = { socket: values.socket, user: values.user ?? 'officer', pinFile: values['pin-file'] };
  const print = (value: unknown, text: () => string) =>
    console.log(values.json ? JSON.stringify(value, null, 2) : text());
  switch (action) {
    case 'status': {
      const status = await withPartition(connect, (p) =>
        p.call<Parameters<typeof formatStatus>[0]>('cluster.status'),
      );
      print(status, () => formatStatus(status));
      return EXIT.ok;
    }
    case 'add-member': {
      if (!values.url || !values.cert)
        throw new UsageError('add-member needs --url tls://HOST:PORT and --cert FILE');
      let cert: string;
      try {
        cert = readFileSync(values.cert, 'utf8');
      } catch (error) {
        throw new CliError(`cannot read ${values.cert}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
      }
      const args = { url: values.url, cert, ...(values.id ? { id: values.id } : {}) };
      const result = await withPartition(connect, (p) =>
        p.call<{ version: number; missed: string[] }>('cluster.addMember', args),
      );
      print(
        result,
        () => `member ${values.url} added: membership version ${result.version}${missedLine(result.missed)}`,
      );
      return EXIT.ok;
    }
    case 'remove-member': {
      if (!values.id) throw new UsageError('remove-member needs --id ID (or the member URL)');
      const result = await withPartition(connect, (p) =>
        p.call<{ version: number; missed: string[] }>('cluster.removeMember', { id: values.id }),
      );
      print(
        result,
        () => `member ${values.id} removed: membership version ${result.version}${missedLine(result.missed)}`,
      );
      return EXIT.ok;
    }
    case 'member-cert':
      await memberCertificate(values['link-dir'], values.host ?? [], values.out);
      return EXIT.ok;
    default:
      throw new UsageError(`unknown action '${action}': status, add-member, remove-member or member-cert`);
  }
}

async function memberCertificate(
  linkDir: string | undefined,
  hosts: string[],
  out: string | undefined,
): Promise<void> {
  if (!linkDir || hosts.length === 0 || !out)
    throw new UsageError('member-cert needs --link-dir DIR, --host HOST (repeatable) and --out PREFIX');
  const read = (file: string) => {
    try {
      return readFileSync(path.join(linkDir, file), 'utf8');
    } catch (error) {
      throw new CliError(
        `cannot read ${path.join(linkDir, file)}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
  };
  const made = issueMemberCertificate({
    caCert: read('ca.crt'),
    caKey: read('ca.key'),
    name: `partition ${hosts[0]}`,
    hosts,
  });
  for (const [file, content, mode] of [
    [`${out}.key`, made.key, 0o600],
    [`${out}.crt`, made.cert, 0o644],
  ] as const) {
    await writeNewFile(file, content, mode).catch((error: NodeJS.ErrnoException) => {
      throw new CliError(
        error.code === 'EEXIST'
          ? `${file} exists: choose another --out`
          : `cannot write ${file}: ${error.code}`,
      );
    });
  }
  console.log(`member certificate for ${hosts.join(', ')} written to ${out}.crt, its key to ${out}.key`);
}

const missedLine = (missed: string[]) =>
  missed.length === 0
    ? ''
    : `\nnot reached yet (they get it from the others when they return): ${missed.join(', ')}`;
