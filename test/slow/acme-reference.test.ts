import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../bench/support.ts';
import { crossSign } from '../acme/helpers.ts';
import { hasTool } from '../helpers/tools.ts';
import { type StartedAcmeService, startAcmeService } from './helpers/acme-service.ts';

/**
 * Issue #31: one harness of real clients (Debian's lego 4.9 and certbot 2.1) run against
 * Debian's pebble 2.4 as the reference and against Signet, so that a client quirk is told apart
 * from a server bug: both servers require external account binding (RFC 8555 §7.3.4) and offer
 * an alternate chain (§7.4.2). lego registers with --eab, certbot with --eab-kid/--eab-hmac-key;
 * a registration without a binding and one with an unknown kid are refused; lego's
 * --preferred-chain picks the alternate chain. Neither client sends profiles nor ARI (the
 * protocol tests in test/acme/part2.test.ts cover those with hand-made requests).
 */
const haveTools =
  hasTool('lego', ['--version']) &&
  hasTool('certbot', ['--version']) &&
  hasTool('pebble-challtestsrv', ['-h']) &&
  hasTool('pebble', ['-h']) &&
  hasTool('openssl', ['version']) &&
  hasTool('curl', ['--version']);

const exec = promisify(execFile);

let dir: string;
let challtestsrv: ChildProcess;
let dnsPort = 0;

async function run(command: string, args: string[], env: Record<string, string> = {}, cwd = dir) {
  try {
    const { stdout, stderr } = await exec(command, args, {
      cwd,
      env: { ...process.env, ...env },
      timeout: 180_000,
      maxBuffer: 1 << 22,
    });
    return `${stdout}${stderr}`;
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    throw new Error(`${command} ${args.join(' ')} failed:\n${stdout}${stderr}`);
  }
}

/** The output of a command that must fail. */
async function refused(command: string, args: string[], env: Record<string, string>) {
  const error = await run(command, args, env).then(
    () => undefined,
    (e: Error) => e,
  );
  expect(error, `${command} should have failed`).toBeInstanceOf(Error);
  return error!.message;
}

interface Target {
  name: string;
  directoryUrl: string;
  /** What the clients trust for the server's HTTPS. */
  caFile: string;
  /** Where the server connects for http-01. */
  httpPort: number;
  /** A fresh EAB key. */
  eab(): Promise<{ kid: string; hmacKey: string }>;
  /** The issuer CN at the top of the alternate chain (lego --preferred-chain). */
  alternateTopIssuer(): Promise<string>;
  stop(): Promise<void>;
}

const cn = (name: string) => /CN=([^\n,]+)/.exec(name)?.[1]?.trim();

/** The clients against one server: the same steps, the same expectations. */
function harness(target: () => Target) {
  const work = (t: Target) => path.join(dir, t.name);
  const lego = (t: Target, args: string[], email = 'ops@example.com') =>
    run(
      'lego',
      [
        '--server',
        t.directoryUrl,
        '--email',
        email,
        '--path',
        path.join(work(t), 'lego'),
        '--accept-tos',
        ...args,
      ],
      { LEGO_CA_CERTIFICATES: t.caFile },
    );
  const http = (t: Target) => ['--http', '--http.port', `:${t.httpPort}`];

  it('lego registers with --eab --kid --hmac and issues over http-01', async () => {
    const t = target();
    const { kid, hmacKey } = await t.eab();
    const output = await lego(t, [
      '--eab',
      '--kid',
      kid,
      '--hmac',
      hmacKey,
      '--domains',
      'eab-lego.example.com',
      ...http(t),
      'run',
    ]);
    expect(output).toContain('Server responded with a certificate');
    const pem = readFileSync(path.join(work(t), 'lego', 'certificates', 'eab-lego.example.com.crt'), 'utf8');
    expect(new X509Certificate(pem).subjectAltName).toBe('DNS:eab-lego.example.com');
  });

  it('certbot registers with --eab-kid --eab-hmac-key and issues over http-01', async () => {
    const t = target();
    const { kid, hmacKey } = await t.eab();
    const output = await run(
      'certbot',
      [
        'certonly',
        '--standalone',
        '--http-01-port',
        String(t.httpPort),
        '--server',
        t.directoryUrl,
        '-d',
        'eab-certbot.example.com',
        '--agree-tos',
        '-m',
        'ops@example.com',
        '--no-eff-email',
        // The joined form: a value starting with '-' (pebble's, or an older Signet's) is no option.
        `--eab-kid=${kid}`,
        `--eab-hmac-key=${hmacKey}`,
        '--non-interactive',
        '--config-dir',
        path.join(work(t), 'certbot', 'config'),
        '--work-dir',
        path.join(work(t), 'certbot', 'work'),
        '--logs-dir',
        path.join(work(t), 'certbot', 'logs'),
      ],
      { REQUESTS_CA_BUNDLE: t.caFile },
    );
    expect(output).toContain('Successfully received certificate');
  });

  it('refuses lego without a binding (externalAccountRequired) and with an unknown kid', async () => {
    const t = target();
    const without = await refused(
      'lego',
      [
        '--server',
        t.directoryUrl,
        '--email',
        'no-eab@example.com',
        '--path',
        path.join(work(t), 'lego-no-eab'),
        '--accept-tos',
        '--domains',
        'x.example.com',
        ...http(t),
        'run',
      ],
      { LEGO_CA_CERTIFICATES: t.caFile },
    );
    // lego reads meta.externalAccountRequired and stops before asking (the server refuses too: test/acme).
    expect(without).toMatch(/Server requires External Account Binding/);
    const unknown = await refused(
      'lego',
      [
        '--server',
        t.directoryUrl,
        '--email',
        'bad-kid@example.com',
        '--path',
        path.join(work(t), 'lego-bad-kid'),
        '--accept-tos',
        '--eab',
        '--kid',
        'no-such-kid',
        '--hmac',
        randomBytes(32).toString('base64url'),
        '--domains',
        'x.example.com',
        ...http(t),
        'run',
      ],
      { LEGO_CA_CERTIFICATES: t.caFile },
    );
    expect(unknown).toMatch(/unauthorized|malformed/);
  });

  it('lego --preferred-chain takes the alternate chain (Link rel="alternate")', async () => {
    const t = target();
    const top = await t.alternateTopIssuer();
    const { kid, hmacKey } = await t.eab();
    await lego(
      t,
      ['--eab', '--kid', kid, '--hmac', hmacKey, '--domains', 'chain.example.com', ...http(t)].concat([
        'run',
        '--preferred-chain',
        top,
      ]),
      'chain@example.com',
    );
    const pems = readFileSync(
      path.join(work(t), 'lego', 'certificates', 'chain.example.com.crt'),
      'utf8',
    ).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
    expect(cn(new X509Certificate(pems.at(-1)!).issuer)).toBe(top);
  });
}

async function startPebble(): Promise<Target> {
  const root = path.join(dir, 'pebble-server');
  mkdirSync(root, { recursive: true });
  const [port, management, httpPort] = [await freePort(), await freePort(), await freePort()];
  const cert = path.join(root, 'cert.pem');
  const key = path.join(root, 'key.pem');
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    key,
    '-out',
    cert,
    '-days',
    '2',
    '-subj',
    '/CN=pebble',
    '-addext',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ]);
  const keys = Object.fromEntries(
    ['kid-lego', 'kid-certbot', 'kid-spare'].map((kid) => [kid, randomBytes(32).toString('base64url')]),
  );
  const config = path.join(root, 'pebble.json');
  writeFileSync(
    config,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${port}`,
        managementListenAddress: `127.0.0.1:${management}`,
        certificate: cert,
        privateKey: key,
        httpPort,
        tlsPort: await freePort(),
        ocspResponderURL: '',
        externalAccountBindingRequired: true,
        externalAccountMACKeys: keys,
      },
    }),
  );
  const child = spawn('pebble', ['-config', config, '-dnsserver', `127.0.0.1:${dnsPort}`], {
    stdio: 'ignore',
    env: {
      ...process.env,
      // Pebble's deliberate chaos off: no sleeps before validation, no random bad nonces.
      PEBBLE_VA_NOSLEEP: '1',
      PEBBLE_WFE_NONCEREJECT: '0',
      PEBBLE_ALTERNATE_ROOTS: '1',
    },
  });
  const directoryUrl = `https://127.0.0.1:${port}/dir`;
  for (let i = 0; i < 100; i++) {
    try {
      await run('curl', ['-sf', '--cacert', cert, directoryUrl]);
      break;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  const unused = Object.entries(keys);
  return {
    name: 'pebble',
    directoryUrl,
    caFile: cert,
    httpPort,
    eab: async () => {
      const [kid, hmacKey] = unused.shift()!;
      return { kid, hmacKey };
    },
    async alternateTopIssuer() {
      const pem = await run('curl', ['-sf', '--cacert', cert, `https://127.0.0.1:${management}/roots/1`]);
      return cn(new X509Certificate(pem).subject)!;
    },
    stop: async () => {
      child.kill();
    },
  };
}

async function startSignet(): Promise<{ target: Target; service: StartedAcmeService }> {
  const root = path.join(dir, 'signet-server');
  mkdirSync(root, { recursive: true });
  const [port, httpPort] = [await freePort(), await freePort()];
  const service = await startAcmeService({
    dir: root,
    port,
    httpPort,
    tlsPort: await freePort(),
    dnsResolver: `127.0.0.1:${dnsPort}`,
    async prepare(runtime, dataDir) {
      const issuer = await runtime.repositories.issuers.get('dev-intermediate');
      const { crossPem } = await crossSign(issuer!.certificateDer);
      writeFileSync(path.join(dataDir, 'certs', 'cross.pem'), crossPem);
    },
    // The dev directory requires EAB here and offers the cross-signed chain.
    acme: {
      alternateChains: ['certs/cross.pem'],
      directories: [
        {
          name: 'dev',
          policy: 'web-server',
          challenges: ['http-01', 'dns-01', 'tls-alpn-01'],
          eab: 'required',
        },
      ],
    },
  });
  const target: Target = {
    name: 'signet',
    directoryUrl: service.directoryUrl,
    caFile: service.rootFile,
    httpPort,
    async eab() {
      // The admin's command, against the running server (the dev root trusted for its HTTPS).
      const output = await run(
        process.execPath,
        [
          'bin/signet.js',
          'acme',
          'eab',
          'create',
          '--data',
          service.dataDir,
          '--directory',
          'dev',
          '--policy',
          'web-server',
          '--expires',
          'P1D',
          '--json',
        ],
        { NODE_EXTRA_CA_CERTS: service.rootFile },
        process.cwd(),
      );
      const body = JSON.parse(output.slice(output.indexOf('{'))) as { kid: string; hmacKey: string };
      return { kid: body.kid, hmacKey: body.hmacKey };
    },
    alternateTopIssuer: async () => 'Other Root CA',
    stop: () => service.serving.stop(),
  };
  return { target, service };
}

describe.skipIf(!haveTools)('the client harness against pebble and Signet (issue #31)', () => {
  let pebble: Target;
  let signet: Target;
  let signetService: StartedAcmeService;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-acme-reference-'));
    dnsPort = await freePort();
    challtestsrv = spawn(
      'pebble-challtestsrv',
      [
        '-defaultIPv6',
        '',
        '-dns01',
        `127.0.0.1:${dnsPort}`,
        '-management',
        `127.0.0.1:${await freePort()}`,
      ].concat(['-http01', '', '-https01', '', '-tlsalpn01', '']),
      { stdio: 'ignore' },
    );
    pebble = await startPebble();
    ({ target: signet, service: signetService } = await startSignet());
  }, 240_000);

  afterAll(async () => {
    await pebble?.stop();
    await signet?.stop();
    challtestsrv?.kill();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  describe('pebble 2.4 (the reference)', () => harness(() => pebble));
  describe('Signet', () => {
    harness(() => signet);

    it('binds each key once: a second registration with the same kid is refused', async () => {
      const { kid, hmacKey } = await signet.eab();
      const args = (email: string) => [
        '--server',
        signet.directoryUrl,
        '--email',
        email,
        '--path',
        path.join(dir, `signet-${email}`),
        '--accept-tos',
        '--eab',
        '--kid',
        kid,
        '--hmac',
        hmacKey,
        '--domains',
        `${email.split('@')[0]}.example.com`,
        '--http',
        '--http.port',
        `:${signet.httpPort}`,
        'run',
      ];
      await run('lego', args('first@example.com'), { LEGO_CA_CERTIFICATES: signet.caFile });
      const output = await refused('lego', args('second@example.com'), {
        LEGO_CA_CERTIFICATES: signet.caFile,
      });
      expect(output).toMatch(/already been used/);
      const { items } = await signetService.serving.runtime.repositories.audit.list({ limit: 1000 });
      expect(items.some((e) => e.action === 'acme.eab.create')).toBe(true);
    });
  });
});
