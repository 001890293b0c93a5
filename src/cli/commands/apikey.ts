import { ApiClientError, createApiClient } from '../../api/client.ts';
import { ROLES } from '../../api/env.ts';
import { resolveDataDir } from '../../config/config.ts';
import { parseDuration } from '../../lib/duration.ts';
import { EXIT, parseCommandArgs, runSubcommand, UsageError } from '../args.ts';
import { apiKeyFor, serverUrl } from '../server-access.ts';

/**
 * `signet apikey create | list | revoke`: API keys are managed through the running server's API
 * (DESIGN.md "CLI and a running server"), found and authenticated as `issue` and `revoke` do
 * (server-access.ts). The new key is printed once, to stdout, and never stored by this command.
 */
export const USAGE = `usage: signet apikey <create|list|revoke> [options]

  create --role ROLE [--role ROLE ...] [--policy NAME ...] [--expires-in P90D] [--description TEXT]
         roles: issuer, revoker, auditor, admin; an issuer key needs at least one --policy (or '*')
  list
  revoke ID

options for every subcommand:
  --data DIR           the data folder (default $SIGNET_DATA, else ./data): its server and admin key
  --url URL            the server (default: where 'signet serve' listens on DIR: SIGNET_PORT, else
                       signet.yaml; without a data folder http://127.0.0.1:8080)
  --api-key-file FILE  an admin API key (else SIGNET_API_KEY, else DIR/secrets/admin-api-key)
  --json               print the server's JSON answer`;

const COMMON = {
  data: { type: 'string' },
  url: { type: 'string' },
  'api-key-file': { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

interface ApiKeyJson {
  id: string;
  roles: string[];
  policies: string[];
  description: string | null;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  status: string;
  key?: string;
}

function clientFor(values: { data?: string; url?: string; 'api-key-file'?: string }) {
  const dataDir = resolveDataDir(values.data);
  const url = serverUrl(dataDir, values.url);
  const apiKey = apiKeyFor(dataDir, values['api-key-file']);
  try {
    return createApiClient({ url, apiKey });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** What the server would refuse with 400, said before asking it: these are usage mistakes. */
function checkCreate(values: { role?: string[]; policy?: string[]; 'expires-in'?: string }): void {
  const roles = values.role ?? [];
  if (roles.length === 0) throw new UsageError('at least one --role is required');
  for (const role of roles) {
    if (!(ROLES as readonly string[]).includes(role))
      throw new UsageError(`--role ${role}: a role is one of ${ROLES.join(', ')}`);
  }
  if (roles.includes('issuer') && !values.policy?.length)
    throw new UsageError("an issuer key needs at least one --policy NAME (or '*' for all)");
  const expiresIn = values['expires-in'];
  if (expiresIn !== undefined) {
    const parsed = parseDuration(expiresIn);
    if (!parsed.ok) throw new UsageError(`--expires-in ${expiresIn}: ${parsed.reason}`);
  }
}

async function create(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    ...COMMON,
    role: { type: 'string', multiple: true },
    policy: { type: 'string', multiple: true },
    'expires-in': { type: 'string' },
    description: { type: 'string' },
  });
  if (values.help) return help();
  checkCreate(values);
  const client = clientFor(values);
  const { body } = await client.request<ApiKeyJson>('POST', '/v1/apikeys', {
    json: {
      roles: values.role!,
      ...(values.policy ? { policies: values.policy } : {}),
      ...(values['expires-in'] ? { expiresIn: values['expires-in'] } : {}),
      ...(values.description ? { description: values.description } : {}),
    },
  });
  if (values.json) {
    console.log(JSON.stringify(body, null, 2));
  } else {
    console.log(body.key);
    console.error(
      `created API key ${body.id} (roles: ${body.roles.join(', ')}${body.policies.length ? `; policies: ${body.policies.join(', ')}` : ''}${
        body.expiresAt ? `; expires ${body.expiresAt}` : ''
      }). It is shown only this once: store it now.`,
    );
  }
  return EXIT.ok;
}

async function list(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, COMMON);
  if (values.help) return help();
  const { body } = await clientFor(values).request<{ items: ApiKeyJson[] }>('GET', '/v1/apikeys');
  if (values.json) {
    console.log(JSON.stringify(body, null, 2));
    return EXIT.ok;
  }
  const rows = body.items.map((k) => [
    k.id,
    k.status,
    k.roles.join(','),
    k.policies.join(',') || '-',
    k.expiresAt ?? '-',
    k.description ?? '',
  ]);
  const header = ['ID', 'STATUS', 'ROLES', 'POLICIES', 'EXPIRES', 'DESCRIPTION'];
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

async function revoke(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, COMMON, { allowPositionals: true });
  if (values.help) return help();
  if (positionals.length !== 1) throw new UsageError('revoke takes exactly one key id');
  const id = positionals[0]!;
  await clientFor(values).request('DELETE', `/v1/apikeys/${encodeURIComponent(id)}`);
  if (values.json) console.log(JSON.stringify({ id, status: 'revoked' }));
  else console.error(`revoked API key ${id}`);
  return EXIT.ok;
}

function help(): number {
  console.log(USAGE);
  return EXIT.ok;
}

const SUBCOMMANDS: Record<string, (argv: string[]) => Promise<number>> = { create, list, revoke };

export function run(argv: string[]): Promise<number> {
  // The server refused (401/403/404/...) or could not be reached: one line, exit 1.
  return runSubcommand(
    argv,
    USAGE,
    SUBCOMMANDS,
    (error): error is ApiClientError => error instanceof ApiClientError,
  );
}
