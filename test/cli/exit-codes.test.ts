import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { format } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { usageLine } from '../../src/cli/args.ts';
import { runCli } from '../../src/cli/cli.ts';

/**
 * Issue #33 "one rule for all commands", as a table over every command: a usage mistake prints
 * `signet <command>: <what was wrong>`, the command's usage line and a hint to `--help`, and exits
 * 2; a refusal or failure exits 1 with one message and never "unexpected error:" or a stack;
 * `--help` prints the usage on standard output and exits 0. The table runs the command line in
 * this process (runCli is all of it but the process), then a few rows through bin/signet.js.
 */

// Made at load: the tables below name paths in it when the tests are collected.
const dir = mkdtempSync(path.join(tmpdir(), 'signet-exit-codes-'));
let sleeper: ChildProcess;
let closedUrl: string;
const at = (...parts: string[]) => path.join(dir, ...parts);

async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

beforeAll(async () => {
  const port = await closedPort();
  closedUrl = `http://127.0.0.1:${port}`;
  writeFileSync(at('pin'), '12345678\n');
  writeFileSync(at('secret'), 'not the secret\n');
  writeFileSync(at('api-key'), 'sgk_0123456789abcdef_nope\n');
  writeFileSync(at('existing'), 'x');
  writeFileSync(
    at('not-a-csr.pem'),
    '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n',
  );
  writeFileSync(at('some.crl'), Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]));
  // A data folder with a mistake in signet.yaml.
  mkdirSync(at('bad'));
  writeFileSync(at('bad', 'signet.yaml'), 'partitions: {}\ntrustedRoots: [root.pem]\nbogus: 1\n');
  // A data folder whose database another (live) process holds, as a running server would.
  mkdirSync(at('held'));
  writeFileSync(
    at('held', 'signet.yaml'),
    `server:\n  port: ${port}\npartitions: {}\ntrustedRoots: [root.pem]\n`,
  );
  sleeper = spawn('sleep', ['600'], { stdio: 'ignore' });
  writeFileSync(at('held', 'db.lock'), `${JSON.stringify({ pid: sleeper.pid, hostname: hostname() })}\n`);
  // A folder init must refuse.
  mkdirSync(at('inited'));
  writeFileSync(at('inited', 'signet.yaml'), 'partitions: {}\n');
  mkdirSync(at('bad-policies'));
  writeFileSync(at('bad-policies', 'broken.yaml'), 'name: broken\nocsp_must_stapel: true\n');
  writeFileSync(at('bad-ceremony.yaml'), 'ceremony-type: root\n');
  // A valid key ceremony, to be run without the secrets it needs.
  mkdirSync(at('ceremony', 'issuing-partition'), { recursive: true });
  copyFileSync('ceremonies/examples/key.yaml', at('ceremony', 'key.yaml'));
});

afterAll(() => {
  sleeper?.kill();
  rmSync(dir, { recursive: true, force: true });
});

interface Result {
  status: number;
  stdout: string;
  stderr: string;
}

/** runCli with standard output and error captured, and the environment of the row. */
async function cli(args: string[], env: Record<string, string | undefined> = {}): Promise<Result> {
  let stdout = '';
  let stderr = '';
  const saved = { ...process.env };
  for (const name of ['SIGNET_DATA', 'SIGNET_API_KEY', 'SIGNET_PORT', 'DATABASE_URL', 'SIGNET_HSM_PIN'])
    delete process.env[name];
  Object.assign(process.env, env);
  const spies = [
    vi.spyOn(console, 'log').mockImplementation((...a) => {
      stdout += `${format(...a)}\n`;
    }),
    vi.spyOn(console, 'error').mockImplementation((...a) => {
      stderr += `${format(...a)}\n`;
    }),
    vi.spyOn(console, 'warn').mockImplementation((...a) => {
      stderr += `${format(...a)}\n`;
    }),
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      stdout += String(chunk);
      return true;
    }),
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
      stderr += String(chunk);
      return true;
    }),
  ];
  try {
    const status = await runCli(args);
    return { status, stdout, stderr };
  } finally {
    for (const spy of spies) spy.mockRestore();
    process.env = saved;
  }
}

/** The top-level commands (src/cli/commands/*.ts) and the partition's (signet hsm --help). */
const TOP = readdirSync('src/cli/commands')
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
  .map((f) => f.slice(0, -3))
  .sort();

const HSM_SUBCOMMANDS = [
  'init',
  'serve',
  'status',
  'unseal',
  'keys',
  'certificate',
  'user',
  'audit',
  'backup',
  'restore',
  'sync',
  'cluster',
];

/** `hsm keys` for ['hsm', 'keys', ...], else the top-level command. */
const commandOf = (args: string[]) =>
  args[0] === 'hsm' && HSM_SUBCOMMANDS.includes(args[1] ?? '') ? `hsm ${args[1]}` : args[0]!;

type Row = [name: string, args: string[], env?: Record<string, string>];

/** A mistake in each command's command line. */
const USAGE_MISTAKES = (): Row[] => [
  ['start with a port that is not one', ['start', '--port', 'eighty']],
  ['init with port 0', ['init', '--port', '0']],
  [
    'init --partition-listen that is no tls:// address',
    ['init', '--partition-listen', 'https://127.0.0.1:7001'],
  ],
  ['serve with a port out of range', ['serve', '--port', '70000']],
  ['issue without --csr', ['issue']],
  ['revoke zz (not a serial)', ['revoke', 'zz', '--reason', 'keyCompromise']],
  ['revoke with an unknown reason', ['revoke', '01', '--reason', 'stolen']],
  [
    'revoke with an invalidity date that is not RFC 3339',
    ['revoke', '01', '--reason', 'keyCompromise', '--invalidity-date', 'yesterday'],
  ],
  ['revoke without a serial', ['revoke', '--reason', 'keyCompromise']],
  ['apikey create --role wizard', ['apikey', 'create', '--role', 'wizard']],
  ['apikey create for an issuer without --policy', ['apikey', 'create', '--role', 'issuer']],
  [
    'apikey create with a duration that is not ISO 8601',
    ['apikey', 'create', '--role', 'auditor', '--expires-in', '90d'],
  ],
  ['apikey revoke without an id', ['apikey', 'revoke']],
  ['apikey without a subcommand', ['apikey']],
  ['apikey list without any API key', ['apikey', 'list', '--data', '/nonexistent-signet']],
  ['acme eab create without --policy', ['acme', 'eab', 'create', '--directory', 'dev']],
  [
    'acme eab create with a duration that is not ISO 8601',
    ['acme', 'eab', 'create', '--directory', 'dev', '--policy', 'web-server', '--expires', '30d'],
  ],
  ['acme without a subcommand', ['acme']],
  ['certificate create without --policy', ['certificate', 'create', 'a.example.com', '--out', 'x']],
  ['certificate renew without --key', ['certificate', 'renew', '--cert', 'c.pem']],
  ['certificate list with an unknown status', ['certificate', 'list', '--status', 'good']],
  ['certificate without a subcommand', ['certificate']],
  ['issuer add without --key', ['issuer', 'add', '--id', 'x', '--certificate', 'x.pem']],
  [
    'issuer add with an id that is no slug',
    ['issuer', 'add', '--id', 'X Y', '--certificate', 'x.pem', '--key', 'k'],
  ],
  ['issuer with an unknown subcommand', ['issuer', 'remove']],
  ['ocsp-responder rotate without --issuer', ['ocsp-responder', 'rotate']],
  ['crl import without FILE', ['crl', 'import', '--issuer', 'dev-root']],
  ['crl without a subcommand', ['crl']],
  ['policy lint with two folders', ['policy', 'lint', 'a', 'b']],
  ['policy check without --policy', ['policy', 'check', '--csr', 'x.csr']],
  ['policy with an unknown subcommand', ['policy', 'frob']],
  ['audit reconcile --grace 5m', ['audit', 'reconcile', '--grace', '5m']],
  ['audit without a subcommand', ['audit']],
  ['ceremony validate without FILE', ['ceremony', 'validate']],
  ['ceremony without a subcommand', ['ceremony']],
  ['ceremony verify-transcript without --anchor', ['ceremony', 'verify-transcript', 't.json']],
  ['hsm without a subcommand', ['hsm']],
  ['hsm with an unknown subcommand', ['hsm', 'frob']],
  ['hsm init without --dir', ['hsm', 'init']],
  ['hsm init without a secret or shares', ['hsm', 'init', '--dir', 'p']],
  ['hsm serve with neither --dir nor --ephemeral', ['hsm', 'serve']],
  [
    'hsm serve --listen without its certificates',
    [
      'hsm',
      'serve',
      '--ephemeral',
      'e.json',
      '--name',
      'n',
      '--socket',
      's',
      '--listen',
      'tls://127.0.0.1:7001',
    ],
  ],
  [
    'hsm serve --listen that is no tls:// address',
    ['hsm', 'serve', '--ephemeral', 'e.json', '--name', 'n', '--socket', 's', '--listen', '127.0.0.1:7001'],
  ],
  [
    'hsm serve --tls-cert without --listen',
    ['hsm', 'serve', '--ephemeral', 'e.json', '--name', 'n', '--socket', 's', '--tls-cert', 'c.pem'],
  ],
  ['hsm status without --socket', ['hsm', 'status']],
  ['hsm unseal with both --socket and --dir', ['hsm', 'unseal', '--socket', 's', '--dir', 'd']],
  ['hsm keys create without --algorithm', ['hsm', 'keys', 'create', '--socket', 's', '--label', 'l']],
  ['hsm keys without an action', ['hsm', 'keys']],
  ['hsm certificate import without --key', ['hsm', 'certificate', 'import', '--socket', 's', 'c.pem']],
  ['hsm user add without a name', ['hsm', 'user', 'add', '--socket', 's', '--role', 'user']],
  ['hsm user with an unknown action', ['hsm', 'user', 'frob']],
  ['hsm audit verify without --dir', ['hsm', 'audit', 'verify']],
  ['hsm backup without --out', ['hsm', 'backup', '--dir', 'p']],
  ['hsm restore without --in', ['hsm', 'restore', '--dir', 'p', '--secret-file', 's']],
  ['hsm sync without --dir', ['hsm', 'sync', '--in', 'b']],
  [
    'hsm cluster add-member without --url',
    ['hsm', 'cluster', 'add-member', '--socket', 's', '--cert', 'c.pem'],
  ],
  ['an unknown command', ['frobnicate']],
];

/** A refusal or failure of each command, in situations a user meets. */
const FAILURES = (): Row[] => [
  ['start on a folder whose signet.yaml has a mistake', ['start', '--data', at('bad')]],
  ['start while another process holds the database', ['start', '--data', at('held')]],
  ['init on an initialised folder', ['init', '--data', at('inited')]],
  ['serve without a data folder', ['serve', '--data', at('missing')]],
  ['serve while another process holds the database', ['serve', '--data', at('held')]],
  ['issue with a CSR file that does not exist', ['issue', '--csr', at('missing.csr')]],
  [
    'certificate renew with a certificate file that does not exist',
    ['certificate', 'renew', '--cert', at('missing.pem'), '--key', at('missing.key')],
  ],
  [
    'certificate list when no server answers',
    ['certificate', 'list', '--url', '{closed}', '--api-key-file', at('api-key')],
  ],
  [
    'issue when the server holding the folder cannot be reached',
    ['issue', '--csr', at('not-a-csr.pem'), '--data', at('held'), '--api-key-file', at('api-key')],
  ],
  [
    'revoke when the server holding the folder cannot be reached',
    ['revoke', '01', '--reason', 'keyCompromise', '--data', at('held'), '--api-key-file', at('api-key')],
  ],
  [
    'apikey list when no server answers',
    ['apikey', 'list', '--url', '{closed}', '--api-key-file', at('api-key')],
  ],
  [
    'apikey create when no server answers',
    ['apikey', 'create', '--role', 'auditor', '--data', at('held'), '--api-key-file', at('api-key')],
  ],
  [
    'apikey revoke when no server answers',
    ['apikey', 'revoke', '0123456789abcdef', '--url', '{closed}', '--api-key-file', at('api-key')],
  ],
  [
    'acme eab create when no server answers',
    [
      'acme',
      'eab',
      'create',
      '--directory',
      'dev',
      '--policy',
      'web-server',
      '--url',
      '{closed}',
      '--api-key-file',
      at('api-key'),
    ],
  ],
  ['issuer list while another process holds the database', ['issuer', 'list', '--data', at('held')]],
  [
    'issuer add with a certificate file that does not exist',
    [
      'issuer',
      'add',
      '--id',
      'x',
      '--certificate',
      at('missing.pem'),
      '--key',
      'hsm:partition=issuing;label=x',
    ],
  ],
  ['issuer list without a data folder', ['issuer', 'list', '--data', at('missing')]],
  ['ocsp-responder list without a data folder', ['ocsp-responder', 'list', '--data', at('missing')]],
  [
    'crl import when the server holding the folder cannot be reached',
    [
      'crl',
      'import',
      '--issuer',
      'dev-root',
      at('some.crl'),
      '--data',
      at('held'),
      '--api-key-file',
      at('api-key'),
    ],
  ],
  ['policy lint of a broken policy', ['policy', 'lint', at('bad-policies')]],
  ['policy lint of a data folder with a mistake in signet.yaml', ['policy', 'lint', '--data', at('bad')]],
  [
    'policy check of a file that is not a CSR',
    ['policy', 'check', '--policy', 'web-server', '--csr', at('not-a-csr.pem'), '--dir', 'policies'],
  ],
  ['audit reconcile without a data folder', ['audit', 'reconcile', '--data', at('missing')]],
  [
    'audit reconcile while another process holds the database',
    ['audit', 'reconcile', '--data', at('held'), '--grace', 'PT10M'],
  ],
  ['ceremony validate of a broken configuration', ['ceremony', 'validate', at('bad-ceremony.yaml')]],
  ['ceremony run of a broken configuration', ['ceremony', 'run', at('bad-ceremony.yaml')]],
  [
    'ceremony verify-transcript of a missing transcript',
    ['ceremony', 'verify-transcript', at('missing.json'), '--anchor', at('missing.pem')],
  ],
  [
    'hsm init over existing unseal material',
    [
      'hsm',
      'init',
      '--dir',
      at('new-partition'),
      '--secret-out',
      at('existing'),
      '--officer-pin-file',
      at('pin'),
    ],
  ],
  ['hsm serve of a folder that is no partition', ['hsm', 'serve', '--dir', at('missing')]],
  ['hsm status of a socket nobody serves', ['hsm', 'status', '--socket', at('missing.sock')]],
  [
    'hsm unseal of a socket nobody serves',
    ['hsm', 'unseal', '--socket', at('missing.sock'), '--secret-file', at('secret')],
  ],
  [
    'hsm keys list of a socket nobody serves',
    ['hsm', 'keys', 'list', '--socket', at('missing.sock'), '--pin-file', at('pin')],
  ],
  [
    'hsm certificate list of a socket nobody serves',
    ['hsm', 'certificate', 'list', '--socket', at('missing.sock'), '--pin-file', at('pin')],
  ],
  [
    'hsm user list of a socket nobody serves',
    ['hsm', 'user', 'list', '--socket', at('missing.sock'), '--pin-file', at('pin')],
  ],
  ['hsm audit verify of a folder that is no partition', ['hsm', 'audit', 'verify', '--dir', at('missing')]],
  [
    'hsm backup of a folder that is no partition',
    ['hsm', 'backup', '--dir', at('missing'), '--out', at('backup.bin')],
  ],
  [
    'hsm restore of a backup that does not exist',
    ['hsm', 'restore', '--in', at('missing.bin'), '--dir', at('restored'), '--secret-file', at('secret')],
  ],
  [
    'hsm sync of a backup that does not exist',
    ['hsm', 'sync', '--in', at('missing.bin'), '--dir', at('restored'), '--secret-file', at('secret')],
  ],
  [
    'hsm cluster status of a socket nobody serves',
    ['hsm', 'cluster', 'status', '--socket', at('missing.sock'), '--pin-file', at('pin')],
  ],
];

const withUrl = (args: string[]) => args.map((a) => (a === '{closed}' ? closedUrl : a));

/** The usage line `signet <command> --help` prints first. */
async function usageOf(command: string): Promise<string> {
  const help = await cli([...command.split(' '), '--help']);
  expect(help.status).toBe(0);
  return usageLine(help.stdout);
}

function expectOneRuleForUsage(
  result: Result,
  command: string,
  usage: string,
  { quiet = true }: { quiet?: boolean } = {},
): void {
  expect(result.status, result.stderr).toBe(2);
  const lines = result.stderr.trimEnd().split('\n');
  expect(lines[0]).toMatch(new RegExp(`^signet${command === 'signet' ? '' : ` ${command}`}: \\S`));
  expect(result.stderr).toContain(usage);
  expect(lines.at(-1)).toMatch(/^Run 'signet( [a-z-]+)* --help' for /);
  expect(result.stderr).not.toContain('unexpected error');
  if (quiet) expect(result.stdout).toBe('');
}

/** Exit 1; the last line is Signet's verdict (lines before it may list each problem, file:line). */
function expectRefusal(result: Result): void {
  expect(result.status, result.stderr).toBe(1);
  expect(result.stderr.trimEnd().split('\n').at(-1)).toMatch(/^signet[a-z ]*: \S/);
  expect(result.stderr).not.toContain('unexpected error');
  expect(result.stderr).not.toMatch(/\n\s+at /);
  expect(result.stderr).not.toContain("Run 'signet");
  expect(result.stdout).not.toContain('Try it');
}

describe('every command says --help and exits 0', () => {
  it.each([...TOP.map((c) => [c]), ...HSM_SUBCOMMANDS.map((s) => [`hsm ${s}`])])(
    'signet %s --help',
    async (command) => {
      const result = await cli([...command.split(' '), '--help']);
      expect(result.status).toBe(0);
      expect(result.stdout).toMatch(new RegExp(`^usage: signet ${command.split(' ')[0]}`));
      expect(result.stderr).toBe('');
    },
  );

  it('lists the same partition subcommands as it serves', async () => {
    const help = await cli(['hsm', '--help']);
    const listed = help.stdout
      .split('\n')
      .filter((line) => /^ {2}[a-z]/.test(line))
      .map((line) => line.trim().split(/\s+/)[0]);
    expect(listed).toEqual(HSM_SUBCOMMANDS);
  });
});

describe('a usage mistake prints the usage line and a hint to --help, and exits 2', () => {
  it.each(
    [...TOP.map((c) => [c]), ...['keys', 'user', 'audit', 'certificate'].map((s) => [`hsm ${s}`])].map(
      ([command]) => [command!],
    ),
  )('signet %s ... --bogus', async (command) => {
    // Past a subcommand where there is one, so the option reaches the command's own parser.
    const sub: Record<string, string[]> = {
      apikey: ['list'],
      acme: ['eab', 'create'],
      certificate: ['list'],
      issuer: ['list'],
      'ocsp-responder': ['list'],
      crl: ['import'],
      policy: ['lint'],
      audit: ['reconcile'],
      ceremony: ['validate'],
      hsm: ['status'],
      'hsm keys': ['list'],
      'hsm user': ['list'],
      'hsm audit': ['verify'],
      'hsm certificate': ['list'],
    };
    const args = [...command.split(' '), ...(sub[command] ?? []), '--bogus'];
    const located = commandOf(args);
    const result = await cli(args);
    expectOneRuleForUsage(result, located, await usageOf(located));
    expect(result.stderr).toContain('unknown option --bogus');
  });

  it.each(USAGE_MISTAKES())('%s', async (_name, args, env) => {
    const located = TOP.includes(args[0]!) ? commandOf(args) : 'signet';
    const result = await cli(args, env);
    const usage = located === 'signet' ? 'usage: signet <command> [options]' : await usageOf(located);
    expectOneRuleForUsage(result, located, usage);
  });

  it('runs a valid ceremony without the secrets it needs as a usage mistake, touching nothing', async () => {
    const result = await cli(['ceremony', 'run', at('ceremony', 'key.yaml'), '--output-dir', at('ceremony')]);
    // Its header (which ceremony, authorised by whom) comes first, then the refusal.
    expectOneRuleForUsage(result, 'ceremony', await usageOf('ceremony'), { quiet: false });
    expect(result.stderr).toContain('--officer-pin-file, --pin-file');
    expect(readdirSync(at('ceremony')).sort()).toEqual(['issuing-partition', 'key.yaml']);
  });

  it('covers every command with a usage mistake', () => {
    const covered = new Set(USAGE_MISTAKES().map(([, args]) => args[0]));
    expect(TOP.filter((c) => !covered.has(c))).toEqual([]);
  });
});

describe('a refusal or failure exits 1 with one message, never "unexpected error" or a stack', () => {
  it.each(FAILURES())('%s', async (_name, args, env) => {
    expectRefusal(await cli(withUrl(args), env));
  });

  it('says the data folder is not initialised and how to do it', async () => {
    const result = await cli(['serve', '--data', at('missing')]);
    expect(result.stderr).toBe(
      `signet: ${at('missing', 'signet.yaml')} does not exist: run 'signet init --data ${at('missing')}' first\n`,
    );
  });

  it('names the process that holds the database', async () => {
    const result = await cli(['serve', '--data', at('held')]);
    expect(result.stderr).toContain(`the database is in use: process ${sleeper.pid} holds it`);
  });

  it('takes --grace as an ISO 8601 duration, and bare seconds for one release with a warning', async () => {
    const iso = await cli(['audit', 'reconcile', '--data', at('held'), '--grace', 'PT10M']);
    expect(iso.stderr).not.toContain('warning');
    const seconds = await cli(['audit', 'reconcile', '--data', at('held'), '--grace', '600']);
    expectRefusal(seconds);
    expect(seconds.stderr).toContain(
      'signet: warning: --grace 600 in bare seconds is deprecated and will be refused in the next release; write it as an ISO 8601 duration: --grace PT10M',
    );
  });

  it('covers every command with a refusal', () => {
    const covered = new Set(FAILURES().map(([, args]) => commandOf(args)));
    const expected = [...TOP.filter((c) => c !== 'hsm'), ...HSM_SUBCOMMANDS.map((s) => `hsm ${s}`)];
    expect(expected.filter((c) => !covered.has(c))).toEqual([]);
  });
});

describe('through bin/signet.js', () => {
  const signet = (args: string[]) =>
    spawnSync(process.execPath, ['bin/signet.js', ...args], {
      encoding: 'utf8',
      timeout: 60_000,
      env: withoutData(),
    });

  it('exits 2 on a usage mistake with the usage line and the hint', () => {
    const result = signet(['issue', '--bogus']);
    expect(result.status).toBe(2);
    expect(result.stderr).toBe(
      "signet issue: unknown option --bogus\nusage: signet issue --csr FILE [--policy NAME] [--out FILE] [--data DIR]\n                    [--url URL] [--api-key-file FILE]\nRun 'signet issue --help' for its options.\n",
    );
  });

  it('refuses a second start on a held folder with exit 1 and prints no example before its error', () => {
    const result = signet(['start', '--data', at('held')]);
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      `signet: the database is in use: process ${sleeper.pid} holds it; stop that process first (lock file ${at('held', 'db.lock')})\n`,
    );
  });
});

/** The suite's environment without a data folder or API key chosen, as a new user's shell has it. */
function withoutData(): NodeJS.ProcessEnv {
  const { SIGNET_DATA: _data, SIGNET_API_KEY: _key, ...env } = process.env;
  return env;
}
