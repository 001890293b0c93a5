import { createApiClient } from '../../api/client.ts';
import { resolveDataDir } from '../../config/config.ts';
import { DatabaseLockedError } from '../../db/errors.ts';
import { isAppError } from '../../lib/errors.ts';
import { REVOCATION_REASONS } from '../../lib/revocation-reasons.ts';
import { InvalidSerialError, normalizeSerial } from '../../lib/serial.ts';
import { CliError, EXIT, parseCommandArgs, UsageError } from '../args.ts';
import { quietLogger } from '../logging.ts';
import { openRuntime } from '../runtime.ts';
import { apiKeyFor, serverUrl } from '../server-access.ts';

/** RFC 3339 date-time (§5.6), as the API's invalidityDate takes it. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

export const USAGE = `usage: signet revoke SERIAL --reason REASON [--invalidity-date RFC3339] [--data DIR]
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
  if (!serial || extra.length > 0) throw new UsageError(`exactly one SERIAL is required`);
  // Mistakes in the command line are usage errors (exit 2), found before any server or database.
  try {
    normalizeSerial(serial);
  } catch (error) {
    if (error instanceof InvalidSerialError) throw new UsageError(`SERIAL ${serial}: ${error.message}`);
    throw error;
  }
  if (!values.reason) throw new UsageError('--reason is required');
  if (!(REVOCATION_REASONS as readonly string[]).includes(values.reason))
    throw new UsageError(`--reason ${values.reason}: a reason is one of ${REVOCATION_REASONS.join(', ')}`);
  const invalidity = values['invalidity-date'];
  if (invalidity !== undefined && (!RFC3339.test(invalidity) || Number.isNaN(Date.parse(invalidity))))
    throw new UsageError(`--invalidity-date ${invalidity}: an RFC 3339 time such as 2026-01-31T12:00:00Z`);
  const dataDir = resolveDataDir(values.data);
  const body = {
    reason: values.reason,
    ...(values['invalidity-date'] ? { invalidityDate: values['invalidity-date'] } : {}),
  };

  const overHttp = async (url: string) => {
    const apiKey = apiKeyFor(dataDir, values['api-key-file']);
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
    return overHttp(serverUrl(dataDir));
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
