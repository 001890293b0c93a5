import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../bench/support.ts';
import { hasTool } from '../helpers/tools.ts';
import { type StartedAcmeService, startAcmeService } from './helpers/acme-service.ts';

/**
 * Issue #30 with the real clients from Debian, over HTTPS with Signet's own TLS certificate:
 * lego 4.9 (http-01, tls-alpn-01, a dns-01 wildcard through pebble-challtestsrv's mock DNS,
 * renew, revoke and then OCSP) and certbot 2.1 (certonly --standalone, renew --force-renewal,
 * revoke --reason keycompromise). Every chain verifies with openssl against the dev root. One
 * CA for the whole file; the clients run one after another.
 */
const haveTools =
  hasTool('lego', ['--version']) &&
  hasTool('certbot', ['--version']) &&
  hasTool('pebble-challtestsrv', ['-h']) &&
  hasTool('openssl', ['version']) &&
  hasTool('curl', ['--version']);

const run = promisify(execFile);

let dir: string;
let service: StartedAcmeService;
let challtestsrv: ChildProcess;
const ports = { ca: 0, http: 0, tls: 0, dns: 0, management: 0 };

/** The server runs in this process: clients run asynchronously so its event loop keeps serving. */
async function client(command: string, args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(command, args, {
      cwd: dir,
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

const lego = (args: string[], env: Record<string, string> = {}) =>
  client(
    'lego',
    [
      '--server',
      service.directoryUrl,
      '--email',
      'ops@example.com',
      '--path',
      path.join(dir, 'lego'),
      ...args,
    ],
    {
      LEGO_CA_CERTIFICATES: service.rootFile,
      ...env,
    },
  );

const certbot = (args: string[]) =>
  client(
    'certbot',
    [
      ...args,
      '--non-interactive',
      '--config-dir',
      path.join(dir, 'certbot', 'config'),
      '--work-dir',
      path.join(dir, 'certbot', 'work'),
      '--logs-dir',
      path.join(dir, 'certbot', 'logs'),
    ],
    { REQUESTS_CA_BUNDLE: service.rootFile },
  );

/** openssl verify of the leaf (first PEM of `chainFile`) with the rest as intermediates, against the dev root. */
let scratchCount = 0;
/** A file of ours outside the clients' folders (lego archives every file named after the domain). */
const scratch = (name: string) => path.join(dir, `scratch-${++scratchCount}-${name}`);

function verifyChain(chainFile: string): { output: string; leaf: X509Certificate; leafFile: string } {
  const pems = readFileSync(chainFile, 'utf8').match(
    /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g,
  )!;
  const leafFile = scratch('leaf.pem');
  const restFile = scratch('rest.pem');
  writeFileSync(leafFile, pems[0]!);
  writeFileSync(restFile, pems.slice(1).join('\n'));
  const result = spawnSync(
    'openssl',
    [
      'verify',
      '-x509_strict',
      '-purpose',
      'sslserver',
      '-CAfile',
      service.rootFile,
      '-untrusted',
      restFile,
      leafFile,
    ],
    { encoding: 'utf8' },
  );
  return { output: `${result.stdout}${result.stderr}`, leaf: new X509Certificate(pems[0]!), leafFile };
}

const legoCertificate = (name: string) => path.join(dir, 'lego', 'certificates', `${name}.crt`);

/**
 * OCSP for a certificate over HTTPS (openssl ocsp as the client, the dev root trusted). Async like
 * every client here: a synchronous call would block the in-process server it waits for.
 */
async function ocspStatus(certFile: string, issuerFile: string): Promise<string> {
  return client('openssl', [
    'ocsp',
    '-timeout',
    '30',
    '-issuer',
    issuerFile,
    '-cert',
    certFile,
    '-url',
    `${service.baseUrl}/ocsp`,
    '-CAfile',
    service.rootFile,
  ]);
}

describe.skipIf(!haveTools)('ACME with lego and certbot over HTTPS (issue #30)', () => {
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-acme-clients-'));
    for (const name of Object.keys(ports) as (keyof typeof ports)[]) ports[name] = await freePort();
    challtestsrv = spawn(
      'pebble-challtestsrv',
      // No AAAA answers: http-01 on 127.0.0.1 would otherwise be tried at ::1 first.
      [
        '-defaultIPv6',
        '',
        '-dns01',
        `127.0.0.1:${ports.dns}`,
        '-management',
        `127.0.0.1:${ports.management}`,
      ].concat(['-http01', '', '-https01', '', '-tlsalpn01', '']),
      { stdio: 'ignore' },
    );
    service = await startAcmeService({
      dir,
      port: ports.ca,
      httpPort: ports.http,
      tlsPort: ports.tls,
      dnsResolver: `127.0.0.1:${ports.dns}`,
    });
    // lego's exec DNS provider: `present|cleanup FQDN VALUE`, set through the mock DNS's API.
    const script = path.join(dir, 'set-txt.sh');
    writeFileSync(
      script,
      `#!/bin/sh
case "$1" in
  present) curl -sf -X POST -d "{\\"host\\":\\"$2\\",\\"value\\":\\"$3\\"}" http://127.0.0.1:${ports.management}/set-txt ;;
  cleanup) curl -sf -X POST -d "{\\"host\\":\\"$2\\"}" http://127.0.0.1:${ports.management}/clear-txt ;;
esac
`,
    );
    chmodSync(script, 0o755);
  }, 240_000);

  afterAll(async () => {
    await service?.serving.stop();
    challtestsrv?.kill();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('lego: http-01, and the chain verifies against the dev root', async () => {
    const output = await lego([
      '--accept-tos',
      '--domains',
      'www.example.com',
      '--http',
      '--http.port',
      `:${ports.http}`,
      'run',
    ]);
    expect(output).toContain('Server responded with a certificate');
    const { output: verified, leaf } = verifyChain(legoCertificate('www.example.com'));
    expect(verified).toContain(': OK');
    expect(leaf.subjectAltName).toBe('DNS:www.example.com');
    expect(leaf.issuer).toContain('Signet Dev Intermediate');
  });

  it('lego: tls-alpn-01', async () => {
    await lego([
      '--accept-tos',
      '--domains',
      'tls.example.com',
      '--tls',
      '--tls.port',
      `:${ports.tls}`,
      'run',
    ]);
    expect(verifyChain(legoCertificate('tls.example.com')).output).toContain(': OK');
  });

  it('lego: a wildcard through dns-01 with the exec provider and the mock DNS', async () => {
    await lego(
      [
        '--accept-tos',
        '--domains',
        '*.app.example.com',
        '--dns',
        'exec',
        '--dns.resolvers',
        `127.0.0.1:${ports.dns}`,
      ].concat(['--dns.disable-cp', 'run']),
      { EXEC_PATH: path.join(dir, 'set-txt.sh'), EXEC_PROPAGATION_TIMEOUT: '30', EXEC_POLLING_INTERVAL: '1' },
    );
    const { output, leaf } = verifyChain(legoCertificate('_.app.example.com'));
    expect(output).toContain(': OK');
    expect(leaf.subjectAltName).toBe('DNS:*.app.example.com');
  });

  it('lego: renew issues a new certificate for the same name', async () => {
    const before = verifyChain(legoCertificate('www.example.com')).leaf.serialNumber;
    const output = await lego([
      '--domains',
      'www.example.com',
      '--http',
      '--http.port',
      `:${ports.http}`,
      'renew',
      '--days',
      '100',
      '--no-random-sleep',
    ]);
    expect(output).toContain('Server responded with a certificate');
    const after = verifyChain(legoCertificate('www.example.com'));
    expect(after.output).toContain(': OK');
    expect(after.leaf.serialNumber).not.toBe(before);
  });

  it('lego: revoke, after which OCSP says revoked', async () => {
    const certFile = legoCertificate('www.example.com');
    const issuerFile = path.join(dir, 'lego', 'certificates', 'www.example.com.issuer.crt');
    const { leafFile } = verifyChain(certFile);
    const issuer = scratch('issuer.pem');
    writeFileSync(issuer, readFileSync(issuerFile));
    expect(await ocspStatus(leafFile, issuer)).toMatch(/: good/);
    expect(await lego(['--domains', 'www.example.com', 'revoke'])).toContain('Certificate was revoked');
    const status = await ocspStatus(leafFile, issuer);
    expect(status).toContain('Response verify OK');
    expect(status).toMatch(/: revoked/);
  });

  it('certbot: certonly --standalone with http-01 on the configured port', async () => {
    const output = await certbot([
      'certonly',
      '--standalone',
      '--http-01-port',
      String(ports.http),
      '--server',
      service.directoryUrl,
      '-d',
      'certbot.example.com',
      '--agree-tos',
      '-m',
      'ops@example.com',
      '--no-eff-email',
    ]);
    expect(output).toContain('Successfully received certificate');
    const { output: verified, leaf } = verifyChain(
      path.join(dir, 'certbot', 'config', 'live', 'certbot.example.com', 'fullchain.pem'),
    );
    expect(verified).toContain(': OK');
    expect(leaf.subjectAltName).toBe('DNS:certbot.example.com');
  });

  it('certbot: renew --force-renewal', async () => {
    const live = path.join(dir, 'certbot', 'config', 'live', 'certbot.example.com', 'fullchain.pem');
    const before = verifyChain(live).leaf.serialNumber;
    // Off a terminal both clients sleep up to minutes before renewing, unless told not to.
    expect(await certbot(['renew', '--force-renewal', '--no-random-sleep-on-renew'])).toContain(
      'all renewals succeeded',
    );
    const after = verifyChain(live);
    expect(after.output).toContain(': OK');
    expect(after.leaf.serialNumber).not.toBe(before);
    expect(readdirSync(path.join(dir, 'certbot', 'config', 'archive', 'certbot.example.com'))).toContain(
      'cert2.pem',
    );
  });

  it('certbot: revoke --reason keycompromise', async () => {
    const cert = path.join(dir, 'certbot', 'config', 'live', 'certbot.example.com', 'cert.pem');
    const serial = new X509Certificate(readFileSync(cert)).serialNumber.toLowerCase();
    const output = await certbot([
      'revoke',
      '--cert-path',
      cert,
      '--reason',
      'keycompromise',
      '--server',
      service.directoryUrl,
      '--no-delete-after-revoke',
    ]);
    expect(output).toContain('successfully revoked');
    const record = await service.serving.runtime.repositories.certificates.findBySerial(serial);
    expect(record).toMatchObject({ status: 'revoked', revocationReason: 'keyCompromise' });
  });

  it('recorded the ACME work in the audit log, by account', async () => {
    const { items } = await service.serving.runtime.repositories.audit.list({ limit: 1000 });
    const actions = new Set(items.filter((e) => e.actor.startsWith('acme:dev:')).map((e) => e.action));
    for (const action of [
      'acme.account.create',
      'acme.order.create',
      'acme.challenge.validate',
      'acme.order.finalize',
      'certificate.issue',
      'certificate.revoke',
    ]) {
      expect(actions).toContain(action);
    }
  });
});
