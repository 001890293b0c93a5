import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { ApiClientError, createApiClient } from '../../api/client.ts';
import { resolveDataDir } from '../../config/config.ts';
import { systemClock } from '../../lib/clock.ts';
import { CliError, EXIT, parseCommandArgs, runSubcommand, UsageError } from '../args.ts';
import {
  FileExistsError,
  fileStem,
  KEY_TYPES,
  type KeyType,
  makeKeyAndCsr,
  sanOf,
  writeFilesAtomically,
} from '../certificate-files.ts';
import { RenewerError, realSleep, renewDaemon, renewOnce } from '../renewer.ts';
import { apiKeyFor, serverUrl } from '../server-access.ts';

/**
 * `signet certificate create | renew | list` (issue #32): what step-ca users do with `step ca
 * certificate` and `step ca renew --daemon`. `create` and `list` go through the running server's
 * API with an API key, found as `issue` and `revoke` find it (server-access.ts); `renew` needs no
 * API key: the certificate's own key signs the request. Keys are made here and never sent.
 */
export const USAGE = `usage: signet certificate <create|renew|list> [options]

  create NAME... --policy NAME --out DIR [--key-type TYPE] [--force]
         makes a key here (never sent), a CSR for the NAMEs (DNS names, IP addresses, emails,
         URIs), issues it and writes DIR/N.key (0600), DIR/N.pem (the certificate) and
         DIR/N.chain.pem (the certificate, then the intermediates), N being the first NAME.
         --key-type: ${KEY_TYPES.join(', ')} (default ecdsa-p256)
  renew --cert FILE --key FILE [--daemon] [--exec CMD] [--force]
         renews once two thirds of the lifetime have passed (--force: now), proving possession
         of the key (no API key); writes FILE and its .chain.pem beside it; runs CMD (sh -c)
         after a renewal. --daemon keeps doing it, with jitter, retrying with backoff.
  list [--status valid|revoked|expired] [--policy NAME] [--issuer ID] [--expires-before TIME]
       [--san NAME] [--json]

options for every subcommand:
  --data DIR           the data folder (default $SIGNET_DATA, else ./data): its server and admin key
  --url URL            the server (default: where 'signet serve' listens on DIR: SIGNET_PORT, else
                       signet.yaml; without a data folder http://127.0.0.1:8080)
  --api-key-file FILE  create and list: an API key (else SIGNET_API_KEY, else DIR/secrets/admin-api-key)`;

const COMMON = {
  data: { type: 'string' },
  url: { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

interface IssuedJson {
  serialNumber: string;
  certificate: string;
  chain: string[];
  notAfter: string;
}

interface CertificateJson {
  serialNumber: string;
  issuer: string;
  policy: string;
  subject: string;
  sans: { type: string; value: string }[];
  notAfter: string;
  status: string;
}

function apiClient(values: { data?: string; url?: string; 'api-key-file'?: string }, withKey: boolean) {
  const dataDir = resolveDataDir(values.data);
  const url = serverUrl(dataDir, values.url);
  try {
    return createApiClient({
      url,
      ...(withKey ? { apiKey: apiKeyFor(dataDir, values['api-key-file']) } : {}),
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

const pem = (text: string) => (text.endsWith('\n') ? text : `${text}\n`);

async function create(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    argv,
    {
      ...COMMON,
      'api-key-file': { type: 'string' },
      policy: { type: 'string' },
      'key-type': { type: 'string' },
      out: { type: 'string' },
      force: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
    { allowPositionals: true },
  );
  if (values.help) return help();
  if (positionals.length === 0) throw new UsageError('at least one NAME is required');
  if (!values.policy) throw new UsageError('--policy NAME is required');
  if (!values.out) throw new UsageError('--out DIR is required');
  const keyType = (values['key-type'] ?? 'ecdsa-p256') as KeyType;
  if (!(KEY_TYPES as readonly string[]).includes(keyType))
    throw new UsageError(`--key-type ${keyType}: one of ${KEY_TYPES.join(', ')}`);
  for (const name of positionals) {
    if (name.trim() === '' || name.startsWith('-')) throw new UsageError(`'${name}' is not a name`);
    sanOf(name);
  }
  const stem = fileStem(positionals[0]!);
  const files = {
    key: path.join(values.out, `${stem}.key`),
    certificate: path.join(values.out, `${stem}.pem`),
    chain: path.join(values.out, `${stem}.chain.pem`),
  };
  const client = apiClient(values, true);
  mkdirSync(values.out, { recursive: true, mode: 0o700 });
  // Before the CA issues anything: a certificate nobody can store is waste.
  const existing = values.force ? [] : Object.values(files).filter((file) => existsSync(file));
  if (existing.length > 0)
    throw new CliError(`${existing[0]} exists; refusing to overwrite it (--force replaces it)`);

  const { keyPem, csrPem } = makeKeyAndCsr(positionals, keyType);
  const { body } = await client.request<IssuedJson>('POST', '/v1/certificates', {
    json: { csr: csrPem, policy: values.policy },
  });
  try {
    writeFilesAtomically(
      [
        { path: files.key, content: keyPem, mode: 0o600 },
        { path: files.certificate, content: pem(body.certificate), mode: 0o644 },
        { path: files.chain, content: [body.certificate, ...body.chain].map(pem).join(''), mode: 0o644 },
      ],
      { force: values.force },
    );
  } catch (error) {
    if (error instanceof FileExistsError) throw new CliError(error.message);
    throw error;
  }
  if (values.json) {
    console.log(JSON.stringify({ ...body, files }, null, 2));
  } else {
    console.log(`${body.serialNumber}`);
    console.error(
      `signet: issued ${body.serialNumber} under ${values.policy}, valid until ${body.notAfter}; wrote ${files.key}, ${files.certificate}, ${files.chain}`,
    );
  }
  return EXIT.ok;
}

async function renew(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    ...COMMON,
    cert: { type: 'string' },
    key: { type: 'string' },
    daemon: { type: 'boolean', default: false },
    exec: { type: 'string' },
    force: { type: 'boolean', default: false },
  });
  if (values.help) return help();
  if (!values.cert) throw new UsageError('--cert FILE is required');
  if (!values.key) throw new UsageError('--key FILE is required');
  const dataDir = resolveDataDir(values.data);
  const certFile = values.cert;
  const options = {
    certFile,
    keyFile: values.key,
    chainFile: certFile.endsWith('.pem') ? `${certFile.slice(0, -4)}.chain.pem` : `${certFile}.chain.pem`,
    url: serverUrl(dataDir, values.url),
    ...(values.exec ? { exec: values.exec } : {}),
    clock: systemClock,
    sleep: realSleep,
    log: (line: string) => console.error(`signet: ${line}`),
  };
  if (values.daemon) {
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    try {
      // Renew at once when --force is given, then on schedule.
      if (values.force) await renewOnce(options, { force: true });
      await renewDaemon(options, stop.signal);
    } finally {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    }
    return EXIT.ok;
  }
  const outcome = await renewOnce(options, { force: values.force });
  if (!outcome.renewed) {
    console.error(
      `signet: ${certFile} is not due for renewal until ${outcome.due.toISOString()} (--force renews now)`,
    );
    return EXIT.ok;
  }
  console.log(outcome.serial);
  if (outcome.execStatus !== undefined && outcome.execStatus !== 0)
    throw new CliError(`renewed, but --exec failed (${outcome.execStatus ?? 'did not start'})`);
  return EXIT.ok;
}

async function list(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    ...COMMON,
    'api-key-file': { type: 'string' },
    status: { type: 'string' },
    policy: { type: 'string' },
    issuer: { type: 'string' },
    'expires-before': { type: 'string' },
    san: { type: 'string' },
    json: { type: 'boolean', default: false },
  });
  if (values.help) return help();
  if (values.status !== undefined && !['valid', 'revoked', 'expired'].includes(values.status))
    throw new UsageError(`--status ${values.status}: one of valid, revoked, expired`);
  if (values['expires-before'] !== undefined && Number.isNaN(Date.parse(values['expires-before'])))
    throw new UsageError(
      `--expires-before ${values['expires-before']}: not a time (RFC 3339, e.g. 2027-01-31T00:00:00Z)`,
    );
  const client = apiClient(values, true);
  const query = new URLSearchParams();
  for (const name of ['status', 'policy', 'issuer', 'san'] as const) {
    if (values[name] !== undefined) query.set(name, values[name]!);
  }
  if (values['expires-before'] !== undefined)
    query.set('expiresBefore', new Date(values['expires-before']).toISOString());
  query.set('limit', '500');
  const items: CertificateJson[] = [];
  for (let cursor: string | null = null; ; ) {
    if (cursor) query.set('cursor', cursor);
    const { body } = await client.request<{ items: CertificateJson[]; nextCursor: string | null }>(
      'GET',
      `/v1/certificates?${query}`,
    );
    items.push(...body.items);
    cursor = body.nextCursor;
    if (!cursor) break;
  }
  if (values.json) {
    console.log(JSON.stringify({ items }, null, 2));
    return EXIT.ok;
  }
  const rows = items.map((c) => [
    c.serialNumber,
    c.status,
    c.notAfter,
    c.policy,
    c.issuer,
    c.sans.map((s) => s.value).join(',') || c.subject,
  ]);
  const header = ['SERIAL', 'STATUS', 'NOT AFTER', 'POLICY', 'ISSUER', 'NAMES'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows])
    console.log(
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    );
  return EXIT.ok;
}

function help(): number {
  console.log(USAGE);
  return EXIT.ok;
}

const SUBCOMMANDS: Record<string, (argv: string[]) => Promise<number>> = { create, renew, list };

export function run(argv: string[]): Promise<number> {
  // The server refused (401/403/404/...) or could not be reached: one line, exit 1.
  return runSubcommand(
    argv,
    USAGE,
    SUBCOMMANDS,
    (error): error is Error => error instanceof ApiClientError || error instanceof RenewerError,
  );
}
