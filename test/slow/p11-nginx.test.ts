import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/api/auth/api-keys.ts';
import { initDataDir } from '../../src/cli/init.ts';
import { type Serving, serveDataDir } from '../../src/cli/serve.ts';
import { hasTool } from '../helpers/tools.ts';
import { haveConsumers, openssl, opensslEngine, pkcs11Tool, writeOpensslConf } from '../hsm/p11/consumers.ts';

/**
 * CloudHSM's own use case, end to end on the embedded default (issue #26): `signet init`, then
 * `signet serve` with `partitions.issuing.p11Socket` set. The officer makes keys of purpose
 * `other` in the issuing partition; OpenSSL's pkcs11 engine signs CSRs with them through
 * p11-kit-client.so; Signet issues the certificates under web-server; Debian's nginx serves HTTPS
 * with `ssl_certificate_key "engine:pkcs11:..."`; curl completes TLS 1.3 and 1.2 handshakes
 * trusting only the dev root; and every handshake signature is in the partition's audit log.
 */
const NGINX = existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';
const ready = haveConsumers() && hasTool(NGINX, ['-v']) && hasTool('curl', ['--version']);
const run = promisify(execFile);

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function signet(args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, ['bin/signet.js', ...args]);
  return stdout;
}

interface AuditLine {
  op: string;
  keyLabel?: string;
  mechanism?: string;
  purpose?: string;
  user?: string;
  result: string;
}

let dir: string;
let data: string;
let serving: Serving;
let nginx: ChildProcess | undefined;
let nginxLog = '';
let p11: string;
let conf: string;
let rootPem: string;
let issuerKey: string;
const ports: Record<string, number> = {};
const ids: Record<string, string> = {};

const file = (name: string) => path.join(dir, name);
const auditLog = (): AuditLine[] =>
  readFileSync(path.join(data, 'hsm/issuing/audit.log'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line));
const handshakeSignatures = (label: string) =>
  auditLog().filter((r) => r.op === 'sign' && r.keyLabel === label && r.result === 'ok');

async function curlHttps(name: string, extra: string[] = []) {
  const url = `https://www.example.com:${ports[name]}/`;
  const { stdout } = await run('curl', [
    '-sS',
    '--max-time',
    '20',
    '--cacert',
    file('root.pem'),
    '--resolve',
    `www.example.com:${ports[name]}:127.0.0.1`,
    '-w',
    '%{ssl_verify_result}',
    ...extra,
    url,
  ]);
  return stdout;
}

async function waitForPort(port: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ port, host: '127.0.0.1' });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline || nginx?.exitCode !== null)
      throw new Error(`nginx did not listen:\n${nginxLog}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A key of purpose other in the issuing partition, a CSR the engine signs with it, and Signet's certificate for it. */
async function keyAndCertificate(label: string, algorithm: string): Promise<string> {
  const created = await signet([
    'hsm',
    'keys',
    'create',
    '--socket',
    path.join(data, 'hsm/issuing.sock'),
    '--pin-file',
    path.join(data, 'secrets/offline/pin-issuing-officer'),
    '--label',
    label,
    '--algorithm',
    algorithm,
    '--purpose',
    'other',
    '--json',
  ]);
  ids[label] = JSON.parse(created).id;
  const pin = readFileSync(path.join(data, 'secrets/pin-issuing-ca'), 'utf8').trim();
  const csr = opensslEngine(p11, conf, [
    'req',
    '-new',
    '-engine',
    'pkcs11',
    '-keyform',
    'engine',
    '-key',
    `pkcs11:token=issuing;object=${label};type=private;pin-value=${pin}`,
    '-subj',
    '/CN=www.example.com',
    '-addext',
    'subjectAltName=DNS:www.example.com',
    '-out',
    file(`${label}.csr`),
  ]);
  expect(csr.status, csr.output).toBe(0);
  writeFileSync(
    file(`${label}.json`),
    JSON.stringify({
      csr: readFileSync(file(`${label}.csr`), 'utf8'),
      policy: 'web-server',
      validity: 'P30D',
    }),
  );
  const { stdout } = await run('curl', [
    '-sS',
    '--max-time',
    '60',
    '-X',
    'POST',
    '-H',
    `authorization: Bearer ${issuerKey}`,
    '-H',
    'content-type: application/json',
    '--data-binary',
    `@${file(`${label}.json`)}`,
    `${serving.server.url}/v1/certificates`,
  ]);
  const issued = JSON.parse(stdout);
  expect(issued.issuer, stdout).toBe('dev-intermediate');
  writeFileSync(file(`${label}.pem`), issued.certificate);
  writeFileSync(file(`${label}-chain.pem`), `${issued.certificate}${issued.chain.join('')}`);
  return issued.certificate;
}

function nginxConf(): string {
  const server = (name: string) => `
    server {
      listen 127.0.0.1:${ports[name]} ssl;
      server_name www.example.com;
      # nginx 1.22 leaves TLS 1.3 off by default.
      ssl_protocols TLSv1.2 TLSv1.3;
      ssl_certificate ${file(`${name}-chain.pem`)};
      ssl_certificate_key "engine:pkcs11:pkcs11:token=issuing;object=${name};type=private;pin-source=${path.join(data, 'secrets/pin-issuing-ca')}";
      location / { return 200 "served by ${name}\\n"; }
    }`;
  const prefix = file('nginx');
  return `
daemon off;
master_process on;
worker_processes 2;
${process.getuid?.() === 0 ? 'user root;' : ''}
pid ${prefix}/nginx.pid;
error_log stderr notice;
# p11-kit-client.so in each worker finds the partition through these.
env P11_KIT_SERVER_ADDRESS;
env OPENSSL_CONF;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  ${server('web')}
  ${server('rsa')}
}
`;
}

describe.skipIf(!ready)('TLS offload: nginx serves HTTPS with a key inside the partition', () => {
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-nginx-'));
    data = path.join(dir, 'data');
    const init = await initDataDir({
      dataDir: data,
      port: 0,
      publicUrl: 'http://127.0.0.1:8080',
      log: () => {},
    });
    rootPem = readFileSync(init.rootCertificateFile, 'utf8');
    writeFileSync(file('root.pem'), rootPem);
    const yaml = readFileSync(init.configFile, 'utf8');
    writeFileSync(
      init.configFile,
      yaml.replace('    spawn: true\n', '    spawn: true\n    p11Socket: hsm/issuing-p11.sock\n'),
    );
    p11 = path.join(data, 'hsm/issuing-p11.sock');
    conf = writeOpensslConf(dir);
    process.env.SIGNET_LOG_LEVEL = 'silent';
    serving = await serveDataDir({ dataDir: data, port: 0 });
    issuerKey = (
      await createApiKey(serving.runtime.repositories.apiKeys, {
        roles: ['issuer'],
        policies: ['web-server'],
      })
    ).key;
    ports.web = await freePort();
    ports.rsa = await freePort();
  }, 240_000);

  afterAll(async () => {
    if (nginx && nginx.exitCode === null) {
      const exited = new Promise((resolve) => nginx!.once('exit', resolve));
      nginx.kill('SIGTERM');
      await exited;
    }
    await serving?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('signet serve opens the PKCS#11 socket from partitions.issuing.p11Socket, showing no CA key', async () => {
    const listed = await run(
      'pkcs11-tool',
      ['--module', '/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so', '-L'],
      {
        env: { ...process.env, P11_KIT_SERVER_ADDRESS: `unix:path=${p11}` },
      },
    );
    expect(listed.stdout).toMatch(/token label\s+: issuing/);
    const keys = JSON.parse(
      await signet([
        'hsm',
        'keys',
        'list',
        '--socket',
        path.join(data, 'hsm/issuing.sock'),
        '--user',
        'ca',
        '--pin-file',
        path.join(data, 'secrets/pin-issuing-ca'),
        '--json',
      ]),
    ) as { label: string; id: string }[];
    ids['dev-intermediate'] = keys.find((k) => k.label === 'dev-intermediate')!.id;
    const pin = readFileSync(path.join(data, 'secrets/pin-issuing-ca'), 'utf8').trim();
    const objects = pkcs11Tool(p11, ['--login', '--pin', pin, '--list-objects']);
    expect(objects.status, objects.output).toBe(0);
    expect(objects.output).not.toContain(ids['dev-intermediate']);
    expect(objects.output).not.toContain('dev-intermediate');
  });

  it('the engine signs CSRs with keys inside, and Signet issues certificates for them that openssl verifies', async () => {
    for (const [label, algorithm] of [
      ['web', 'ecdsa-p256'],
      ['rsa', 'rsa-2048'],
    ] as const) {
      const certificate = await keyAndCertificate(label, algorithm);
      const verify = openssl([
        'verify',
        '-CAfile',
        file('root.pem'),
        '-untrusted',
        file(`${label}-chain.pem`),
        file(`${label}.pem`),
      ]);
      expect(verify.output).toContain(': OK');
      // The certificate carries the partition key's public key.
      const spki = openssl(['req', '-in', file(`${label}.csr`), '-noout', '-pubkey']).output;
      expect(new X509Certificate(certificate).publicKey.export({ type: 'spki', format: 'pem' })).toBe(spki);
      const imported = await signet([
        'hsm',
        'certificate',
        'import',
        '--socket',
        path.join(data, 'hsm/issuing.sock'),
        '--pin-file',
        path.join(data, 'secrets/offline/pin-issuing-officer'),
        '--key',
        `hsm:partition=issuing;label=${label}`,
        file(`${label}.pem`),
      ]);
      expect(imported).toContain(`beside key ${label}`);
    }
    const certs = pkcs11Tool(p11, ['--list-objects', '--type', 'cert']);
    expect(certs.output.match(/Certificate Object/g)).toHaveLength(2);
  });

  it('nginx completes TLS 1.3 and 1.2 handshakes with curl, and each signature is in the audit log', async () => {
    const prefix = file('nginx');
    for (const sub of ['', 'body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'])
      mkdirSync(path.join(prefix, sub), { recursive: true });
    writeFileSync(path.join(prefix, 'nginx.conf'), nginxConf());
    nginx = spawn(NGINX, ['-p', prefix, '-c', path.join(prefix, 'nginx.conf')], {
      env: { ...process.env, P11_KIT_SERVER_ADDRESS: `unix:path=${p11}`, OPENSSL_CONF: conf },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    nginx.stderr!.on('data', (chunk) => {
      nginxLog += chunk;
    });
    await waitForPort(ports.web!);
    await waitForPort(ports.rsa!);
    for (const name of ['web', 'rsa']) {
      const before = handshakeSignatures(name).length;
      const handshakes = [[], ['--tlsv1.2', '--tls-max', '1.2'], [], ['--tlsv1.3']];
      for (const extra of handshakes) {
        expect(await curlHttps(name, extra)).toBe(`served by ${name}\n0`);
      }
      const signatures = handshakeSignatures(name).slice(before);
      expect(signatures.length, nginxLog).toBe(handshakes.length);
      for (const record of signatures) {
        expect(record).toMatchObject({ user: 'ca', purpose: 'other' });
        expect(record.mechanism).toMatch(name === 'web' ? /^ecdsa-raw$/ : /^rsa-(pss|pkcs1)-raw$/);
      }
    }
    // The log those records are in still verifies end to end.
    expect(await signet(['hsm', 'audit', 'verify', '--dir', path.join(data, 'hsm/issuing')])).toMatch(/^OK/);
    expect(
      auditLog().filter((r) => r.op === 'sign' && r.keyLabel === 'dev-intermediate' && r.purpose === 'other'),
    ).toEqual([]);
  });
});
