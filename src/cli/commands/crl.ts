import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { ApiClientError, createApiClient } from '../../api/client.ts';
import { loadConfig, resolveDataDir } from '../../config/config.ts';
import { createAuditRepository } from '../../db/audit.repository.ts';
import { createCrlsRepository } from '../../db/crls.repository.ts';
import { openDatabase } from '../../db/database.ts';
import { DatabaseLockedError } from '../../db/errors.ts';
import { createIssuersRepository, isIssuerId } from '../../db/issuers.repository.ts';
import { systemClock } from '../../lib/clock.ts';
import { isAppError } from '../../lib/errors.ts';
import type { ImportedCrl } from '../../revocation/crl-import.ts';
import { decodePem, PEM_LABEL } from '../../x509/pem.ts';
import { CliError, EXIT, parseCommandArgs, UsageError } from '../args.ts';
import { createImportFor } from '../revocation.ts';
import { nodeId } from '../runtime.ts';
import { apiKeyFor, serverUrl } from '../server-access.ts';

export const USAGE = `usage: signet crl import --issuer ID FILE [--data DIR] [--url URL] [--api-key-file FILE]

import  publishes a CRL signed offline (a root's, from the crl ceremony): the online CA serves it
        at /crl/ID.crl from then on, as it is. FILE is PEM (X509 CRL) or DER. Refused when the
        signature does not verify against the issuer's certificate (crl.signature_invalid), its
        CRL number is not above the one served (crl.number_not_increasing), it has expired
        (crl.expired) or starts in the future (crl.not_yet_valid), or the online CA signs that
        issuer's CRLs itself (crl.issuer_signs_online).

With --url, or while a server holds the data folder, it goes through the API (admin API key from
SIGNET_API_KEY, --api-key-file, or DIR/secrets/admin-api-key); otherwise it writes to the data
folder's database directly.`;

const CRL_LABELS = [PEM_LABEL.crl, 'CRL'];

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h') {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (!sub) throw new UsageError('a subcommand is required: import');
  if (sub !== 'import') throw new UsageError(`unknown crl command '${sub}'`);
  const { values, positionals } = parseCommandArgs(
    rest,
    {
      issuer: { type: 'string' },
      data: { type: 'string' },
      url: { type: 'string' },
      'api-key-file': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    { allowPositionals: true },
  );
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  const [file, ...extra] = positionals;
  if (!file || extra.length > 0) throw new UsageError(`exactly one FILE is required`);
  if (!values.issuer) throw new UsageError('--issuer ID is required');
  if (!isIssuerId(values.issuer)) throw new UsageError(`--issuer ${values.issuer}: an issuer id is a slug`);
  const issuerId = values.issuer;
  const der = readCrlFile(file);
  const dataDir = resolveDataDir(values.data);

  let imported: Record<string, unknown>;
  if (values.url)
    imported = await overHttp(values.url, apiKeyFor(dataDir, values['api-key-file']), issuerId, der);
  else {
    try {
      imported = await locally(dataDir, issuerId, der);
    } catch (error) {
      if (!(error instanceof DatabaseLockedError)) throw error;
      // A server holds the folder: never open it twice (DESIGN.md "CLI and a running server").
      imported = await overHttp(
        serverUrl(dataDir),
        apiKeyFor(dataDir, values['api-key-file']),
        issuerId,
        der,
      );
    }
  }
  console.log(JSON.stringify(imported, null, 2));
  return EXIT.ok;
}

function readCrlFile(file: string): Uint8Array {
  let data: Buffer;
  try {
    data = readFileSync(file);
  } catch (error) {
    throw new CliError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  if (!data.toString('latin1').includes('-----BEGIN')) return new Uint8Array(data);
  try {
    return decodePem(data.toString('latin1'), CRL_LABELS).der;
  } catch (error) {
    throw new CliError(`${file}: ${(error as Error).message}`);
  }
}

async function overHttp(url: string, apiKey: string, issuerId: string, der: Uint8Array) {
  const client = createApiClient({ url, apiKey });
  try {
    const response = await client.request<Record<string, unknown>>(
      'POST',
      `/v1/issuers/${encodeURIComponent(issuerId)}/crl`,
      { body: der, headers: { 'content-type': 'application/pkix-crl' } },
    );
    return response.body;
  } catch (error) {
    if (error instanceof ApiClientError) throw new CliError(error.message, EXIT.failed, { cause: error });
    throw error;
  }
}

const summary = (crl: ImportedCrl) => ({
  issuer: crl.issuerId,
  crlNumber: crl.crlNumber.toString(),
  thisUpdate: crl.thisUpdate.toISOString(),
  nextUpdate: crl.nextUpdate.toISOString(),
  entries: crl.entries,
  sha256: Buffer.from(crl.sha256).toString('hex'),
});

/** On the data folder's database (PGlite, or PostgreSQL beside running servers). */
async function locally(dataDir: string, issuerId: string, der: Uint8Array) {
  const config = loadConfig(dataDir);
  const url = process.env.DATABASE_URL ?? config.database.url;
  const database = await openDatabase(url ? { url } : { dataDir });
  const clock = systemClock;
  const audit = createAuditRepository({ db: database.db, clock, nodeId: nodeId() });
  const record = (decision: 'allowed' | 'denied', details: Record<string, unknown>) =>
    audit.append({
      actor: `cli:${userInfo().username}`,
      action: 'crl.import',
      target: `issuer:${issuerId}`,
      decision,
      details,
    });
  try {
    const crlImport = createImportFor({
      config,
      clock,
      issuers: createIssuersRepository({ db: database.db, clock }),
      crls: createCrlsRepository({ db: database.db }),
    });
    let imported: ImportedCrl;
    try {
      imported = await crlImport.importCrl({ issuerId, der });
    } catch (error) {
      if (!isAppError(error)) throw error;
      await record('denied', { code: error.code });
      throw new CliError(`${error.code}: ${error.message}`);
    }
    await record('allowed', {
      crlNumber: imported.crlNumber.toString(),
      nextUpdate: imported.nextUpdate.toISOString(),
    });
    return summary(imported);
  } finally {
    await database.close();
  }
}
