import { ApiClientError, createApiClient } from '../../api/client.ts';
import { resolveDataDir } from '../../config/config.ts';
import { parseDuration } from '../../lib/duration.ts';
import { CliError, EXIT, parseCommandArgs, UsageError } from '../args.ts';
import { apiKeyFor, serverUrl } from '../server-access.ts';

/**
 * `signet acme eab create`: an external account binding key (RFC 8555 §7.3.4) made through the
 * running server's API (`POST /v1/acme/eab-keys`, admin), found and authenticated as `apikey`
 * does. The HMAC key is printed once, to stdout, and stored nowhere by this command; the server
 * keeps it sealed under its partition.
 */
export const USAGE = `usage: signet acme eab create --directory NAME --policy P [--policy P2 ...] [--expires P30D]

  eab create   a single-use EAB key (kid and HS256 key) for one ACME directory; the account
               that registers with it may order only under the listed policies
               (certbot --eab-kid KID --eab-hmac-key KEY; lego --eab --kid KID --hmac KEY)

options:
  --directory NAME     the ACME directory (acme.directories in signet.yaml)
  --policy P           a policy the directory offers (its policy or one of its profiles); repeat
  --expires DURATION   unused keys expire after this (ISO 8601, e.g. P30D); default: never
  --data DIR           the data folder (default $SIGNET_DATA, else ./data): its server and admin key
  --url URL            the server (default: where 'signet serve' listens on DIR)
  --api-key-file FILE  an admin API key (else SIGNET_API_KEY, else DIR/secrets/admin-api-key)
  --json               print the server's JSON answer`;

interface EabKeyJson {
  kid: string;
  hmacKey: string;
  directory: string;
  policies: string[];
  expiresAt: string | null;
}

async function eabCreate(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    directory: { type: 'string' },
    policy: { type: 'string', multiple: true },
    expires: { type: 'string' },
    data: { type: 'string' },
    url: { type: 'string' },
    'api-key-file': { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  });
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (!values.directory) throw new UsageError('--directory NAME is required');
  if (!values.policy?.length) throw new UsageError('at least one --policy is required');
  if (values.expires !== undefined) {
    const parsed = parseDuration(values.expires);
    if (!parsed.ok) throw new UsageError(`--expires ${values.expires}: ${parsed.reason}`);
  }
  const dataDir = resolveDataDir(values.data);
  let client: ReturnType<typeof createApiClient>;
  try {
    client = createApiClient({
      url: serverUrl(dataDir, values.url),
      apiKey: apiKeyFor(dataDir, values['api-key-file']),
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { body } = await client.request<EabKeyJson>('POST', '/v1/acme/eab-keys', {
    json: {
      directory: values.directory,
      policies: values.policy,
      ...(values.expires ? { expiresIn: values.expires } : {}),
    },
  });
  if (values.json) {
    console.log(JSON.stringify(body, null, 2));
  } else {
    console.log(`kid: ${body.kid}`);
    console.log(`hmac-key: ${body.hmacKey}`);
    console.error(
      `created EAB key ${body.kid} for directory ${body.directory} (policies: ${body.policies.join(', ')}${
        body.expiresAt ? `; expires ${body.expiresAt}` : ''
      }). The HMAC key is shown only this once; it binds one account.`,
    );
  }
  return EXIT.ok;
}

export async function run(argv: string[]): Promise<number> {
  const [group, sub, ...rest] = argv;
  if (group === '--help' || group === '-h' || group === 'help') {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (!group) throw new UsageError('a subcommand is required: eab create');
  if (group !== 'eab') throw new UsageError(`unknown subcommand '${group}'`);
  if (sub === '--help' || sub === '-h') {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (sub !== 'create')
    throw new UsageError(sub ? `unknown subcommand 'eab ${sub}'` : 'a subcommand is required: eab create');
  try {
    return await eabCreate(rest);
  } catch (error) {
    if (error instanceof ApiClientError) throw new CliError(error.message, EXIT.failed, { cause: error });
    throw error;
  }
}
