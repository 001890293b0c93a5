import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { KeyRef } from '../../hsm/types.ts';
import { CliError, EXIT, parseCommandArgs, UsageError } from '../args.ts';
import { CONNECT_OPTIONS, CONNECT_USAGE, withPartition } from './connect.ts';

export const USAGE = `usage: signet hsm certificate <import|list> --socket PATH [options]

  import --key URI [--label L] FILE
                     store the certificate in FILE (PEM or DER) beside its key (officer), where
                     PKCS#11 clients of the partition's p11-kit socket find it (CKO_CERTIFICATE,
                     same CKA_ID as the key, CKA_LABEL L, default the key's label). The key's
                     purposes must be exactly 'other'; the certificate must be for that key. A
                     certificate already stored beside the key is replaced.
  list               the certificates stored beside keys

--key takes a key URI (hsm:partition=NAME;label=LABEL) or a label. The user defaults to
'officer' for import, 'ca' for list.

${CONNECT_USAGE}`;

const OPTIONS = {
  ...CONNECT_OPTIONS,
  key: { type: 'string' },
  label: { type: 'string' },
} as const;

interface WireCertificate {
  keyId: string;
  keyLabel: string | null;
  label: string;
  der: string;
  storedAt: string;
}

/** A PEM CERTIFICATE block (RFC 7468 §5), or the file as DER. */
function readCertificate(file: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    throw new CliError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const text = bytes.toString('latin1');
  const pem = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/.exec(text);
  return pem ? Buffer.from(pem[1]!.replace(/\s+/g, ''), 'base64') : bytes;
}

export async function run(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  if (action === '--help' || action === '-h') {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (!action) throw new UsageError('an action is required: import or list');
  const { values, positionals } = parseCommandArgs(rest, OPTIONS, { allowPositionals: true });
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  const connect = {
    socket: values.socket,
    user: values.user ?? (action === 'import' ? 'officer' : 'ca'),
    pinFile: values['pin-file'],
  };
  switch (action) {
    case 'import': {
      if (!values.key) throw new UsageError('--key URI is required');
      if (positionals.length !== 1) throw new UsageError('name exactly one certificate FILE');
      const der = readCertificate(positionals[0]!);
      const key: KeyRef = values.key.startsWith('hsm:') ? { uri: values.key } : { label: values.key };
      const stored = await withPartition(connect, (p) =>
        p.call<WireCertificate>('storeCertificate', {
          key,
          der: der.toString('base64'),
          ...(values.label !== undefined ? { label: values.label } : {}),
        }),
      );
      console.log(
        values.json
          ? JSON.stringify(stored, null, 2)
          : `stored certificate ${stored.label} beside key ${stored.keyLabel} (id ${stored.keyId})`,
      );
      return EXIT.ok;
    }
    case 'list': {
      if (positionals.length > 0) throw new UsageError('list takes no FILE');
      const list = await withPartition(connect, (p) => p.call<WireCertificate[]>('listCertificates'));
      if (values.json) console.log(JSON.stringify(list, null, 2));
      else console.log(list.length === 0 ? 'no certificates' : list.map(describe).join('\n'));
      return EXIT.ok;
    }
    default:
      throw new UsageError(`unknown certificate action '${action}'; expected import or list`);
  }
}

function describe(c: WireCertificate): string {
  const cert = new X509Certificate(Buffer.from(c.der, 'base64'));
  return `${c.label}  key ${c.keyLabel ?? '?'} (id ${c.keyId})  ${cert.subject.replace(/\n/g, ', ')}  until ${cert.validTo}`;
}
