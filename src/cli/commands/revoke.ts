import { readFileSync } from 'node:fs';
import { createApiClient } from '../../api/client.ts';
import { loadConfig, resolveDataDir, resolveIn } from '../../config/config.ts';
import { DatabaseLockedError } from '../../db/errors.ts';
import { isAppError } from '../../lib/errors.ts';
import { CliError, EXIT, parseCommandArgs, UsageError } from '../args.ts';
import { quietLogger } from '../logging.ts';
import { openRuntime } from '../runtime.ts';

const USAGE = `usage: signet revoke SERIAL --reason REASON [--invalidity-date RFC3339] [--data DIR]
                     [--url URL] [--api-key-file FILE]

Revokes a certificate. SERIAL is hexadecimal, in either case, with or without colons.
REASON is an RFC 5280 name: unspecified, keyCompromise, cACompromise, affiliationChanged,
superseded, cessationOfOperation, privilegeWithdrawn, aACompromise (certificateHold is not
supported). Revoking again returns the existing revocation unless the reason becomes
keyCompromise. With --url, or while a server holds the data folder, it goes through the API
(API key from SIGNET_API_KEY, --api-key-file, or DIR/secrets/admin-api-key); otherwise it runs
against the data folder and publishes a new CRL at once.`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    argv,
    {
      reason: { type: 'string' },
      'invalidity-date': { type: 'string' },
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
  const [serial, ...extra] = positionals;
  if (!serial || extra.length > 0) throw new UsageError(`exactly one SERIAL is required\n\n${USAGE}`);
  if (!values.reason) throw new UsageError('--reason is required');
  const dataDir = resolveDataDir(values.data);
  const body = {
    reason: values.reason,
    ...(values['invalidity-date'] ? { invalidityDate: values['invalidity-date'] } : {}),
  };

  const overHttp = async (url: string) => {
    const apiKey = values['api-key-file']
      ? readFileSync(values['api-key-file'], 'utf8').trim()
      : (process.env.SIGNET_API_KEY ?? readAdminKey(dataDir));
    const client = createApiClient({ url, apiKey });
    try {
      const response = await client.request('POST', `/v1/certificates/${encodeURIComponent(serial)}/revoke`, {
        json: body,
      });
      console.log(JSON.stringify(response.body, null, 2));
      return EXIT.ok;
    } catch (error) {
      throw new CliError((error as Error).message, EXIT.failed, { cause: error });
    }
  };

  if (values.url) return overHttp(values.url);
  let runtime: Awaited<ReturnType<typeof openRuntime>>;
  try {
    runtime = await openRuntime({ dataDir, logger: quietLogger(), revocation: true });
  } catch (error) {
    if (!(error instanceof DatabaseLockedError)) throw error;
    const config = loadConfig(dataDir);
    return overHttp(`http://${config.server.host}:${config.server.port}`);
  }
  try {
    const result = await runtime.revocation!.revoke.revoke({
      serial,
      reason: body.reason,
      invalidityDate: body.invalidityDate ?? null,
    });
    await runtime.revocation!.scheduler.publishNow(result.revocation.issuerId);
    console.log(JSON.stringify({ outcome: result.outcome, ...result.revocation }, null, 2));
    return EXIT.ok;
  } catch (error) {
    if (isAppError(error)) throw new CliError(`${error.code}: ${error.message}`);
    throw error;
  } finally {
    await runtime.close();
  }
}

function readAdminKey(dataDir: string): string {
  try {
    return readFileSync(resolveIn(dataDir, 'secrets/admin-api-key'), 'utf8').trim();
  } catch {
    throw new UsageError('an API key is needed: set SIGNET_API_KEY or pass --api-key-file FILE');
  }
}
