import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { createApiClient } from '../../api/client.ts';
import { resolveDataDir } from '../../config/config.ts';
import { DatabaseLockedError } from '../../db/errors.ts';
import { isAppError } from '../../lib/errors.ts';
import { CliError, EXIT, parseCommandArgs, UsageError } from '../args.ts';
import { quietLogger } from '../logging.ts';
import { openRuntime } from '../runtime.ts';
import { apiKeyFor, serverUrl } from '../server-access.ts';

export const USAGE = `usage: signet issue --csr FILE [--policy NAME] [--out FILE] [--data DIR]
                    [--url URL] [--api-key-file FILE]

Issues a certificate for a PKCS#10 CSR (PEM or DER) under a policy (default web-server) and
prints the certificate followed by its chain (PEM), or writes them to --out (never overwritten).
With --url, or while a server holds the data folder, the request goes through the server's API
(API key from SIGNET_API_KEY, --api-key-file, or DIR/secrets/admin-api-key); otherwise it runs
against the data folder directly.`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    csr: { type: 'string' },
    policy: { type: 'string' },
    out: { type: 'string' },
    data: { type: 'string' },
    url: { type: 'string' },
    'api-key-file': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (!values.csr) throw new UsageError('--csr FILE is required');
  let csr: Buffer;
  try {
    csr = readFileSync(values.csr);
  } catch (error) {
    throw new CliError(`cannot read ${values.csr}: ${(error as NodeJS.ErrnoException).code}`);
  }
  const policy = values.policy ?? 'web-server';
  const dataDir = resolveDataDir(values.data);

  let pem: string;
  if (values.url) {
    pem = await issueOverHttp(values.url, apiKeyFor(dataDir, values['api-key-file']), csr, policy);
  } else {
    try {
      pem = await issueLocally(dataDir, csr, policy);
    } catch (error) {
      if (!(error instanceof DatabaseLockedError)) throw error;
      // A server holds the folder: never open it twice (DESIGN.md "CLI and a running server").
      pem = await issueOverHttp(serverUrl(dataDir), apiKeyFor(dataDir, values['api-key-file']), csr, policy);
    }
  }
  if (values.out) {
    await writeFile(values.out, pem, { flag: 'wx' }).catch((error: NodeJS.ErrnoException) => {
      throw new CliError(
        error.code === 'EEXIST'
          ? `${values.out} exists; refusing to overwrite it`
          : `cannot write ${values.out}`,
      );
    });
    console.error(`signet: wrote ${values.out}`);
  } else {
    process.stdout.write(pem);
  }
  return EXIT.ok;
}

async function issueOverHttp(url: string, apiKey: string, csr: Buffer, policy: string): Promise<string> {
  const client = createApiClient({ url, apiKey });
  try {
    const response = await client.request<string>(
      'POST',
      `/v1/certificates?policy=${encodeURIComponent(policy)}`,
      {
        body: new Uint8Array(csr),
        headers: { 'content-type': 'application/pkcs10', accept: 'application/pem-certificate-chain' },
      },
    );
    return response.body;
  } catch (error) {
    throw new CliError((error as Error).message, EXIT.failed, { cause: error });
  }
}

async function issueLocally(dataDir: string, csr: Buffer, policy: string): Promise<string> {
  const runtime = await openRuntime({ dataDir, logger: quietLogger() });
  try {
    const issued = await runtime.ca.issue({
      csr: new Uint8Array(csr),
      policy,
      requester: { id: `cli:${userInfo().username}`, kind: 'cli', policies: '*' },
    });
    return [issued.certificatePem, ...issued.chainPem].join('');
  } catch (error) {
    if (isAppError(error)) {
      const violations = (error.details?.violations as { code: string; message: string }[] | undefined) ?? [];
      const lines = violations.map((v) => `  ${v.code}: ${v.message}`);
      throw new CliError([`${error.code}: ${error.message}`, ...lines].join('\n'));
    }
    throw error;
  } finally {
    await runtime.close();
  }
}
