import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/api/auth/api-keys.ts';
import { initDataDir } from '../../src/cli/init.ts';
import { type Serving, serveDataDir } from '../../src/cli/serve.ts';
import { createSoftHsmToken, type SoftHsmToken, softHsmAvailable } from '../helpers/softhsm.ts';
import { hasTool } from '../helpers/tools.ts';

/**
 * The whole service with its CA keys on SoftHSM2 tokens (issue #25): `signet init
 * --pkcs11-module --token-label --root-token-label`, the real partition processes opening the
 * tokens, PGlite with the real migrations, issuance verified by openssl, revocation seen by
 * `openssl ocsp` and in the CRL `openssl crl` verifies; then the issuing token goes away (503
 * with Retry-After) and comes back (service resumes).
 */
const ready = softHsmAvailable() && hasTool('openssl', ['version']) && hasTool('curl', ['--version']);
const execFileAsync = promisify(execFile);

describe.runIf(ready)('the service with its keys on SoftHSM2 tokens', () => {
  let token: SoftHsmToken;
  let dir: string;
  let dataDir: string;
  let serving: Serving;
  let issuerKey: string;
  let revokerKey: string;
  let rootPem: string;
  const previousConf = process.env.SOFTHSM2_CONF;

  function openssl(args: string[]): string {
    return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }

  function makeCsr(name: string, dns: string): string {
    const keyFile = path.join(dir, `${name}.key`);
    const csrFile = path.join(dir, `${name}.csr`);
    openssl([
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      keyFile,
      '-subj',
      `/CN=${dns}`,
      '-addext',
      `subjectAltName=DNS:${dns}`,
      '-out',
      csrFile,
    ]);
    return readFileSync(csrFile, 'utf8');
  }

  async function curl(args: string[]): Promise<{ status: number; headers: string; body: Buffer }> {
    const headersFile = path.join(dir, `h-${Math.random().toString(36).slice(2)}.txt`);
    const { stdout: body } = await execFileAsync(
      'curl',
      ['-sS', '--max-time', '60', '-D', headersFile, ...args],
      {
        maxBuffer: 1 << 22,
        encoding: 'buffer',
      },
    );
    const headers = readFileSync(headersFile, 'utf8');
    return { status: Number(/^HTTP\/[\d.]+ (\d{3})/m.exec(headers)?.[1]), headers, body };
  }

  async function issue(name: string, dns: string) {
    const bodyFile = path.join(dir, `${name}.json`);
    writeFileSync(
      bodyFile,
      JSON.stringify({ csr: makeCsr(name, dns), policy: 'web-server', validity: 'P30D' }),
    );
    return curl([
      '-X',
      'POST',
      '-H',
      `authorization: Bearer ${issuerKey}`,
      '-H',
      'content-type: application/json',
      '--data-binary',
      `@${bodyFile}`,
      `${serving.server.url}/v1/certificates`,
    ]);
  }

  /** The folder SoftHSM keeps a token in (its token.object names the label). */
  function tokenFolder(label: string): string {
    const tokens = path.join(token.dir, 'tokens');
    const found = readdirSync(tokens).find((entry) => {
      try {
        return readFileSync(path.join(tokens, entry, 'token.object')).includes(Buffer.from(label));
      } catch {
        return false;
      }
    });
    if (!found) throw new Error(`no SoftHSM folder for token ${label}`);
    return path.join(tokens, found);
  }

  beforeAll(async () => {
    token = createSoftHsmToken('ca-token');
    token.addToken('root-token');
    process.env.SOFTHSM2_CONF = token.conf;
    dir = mkdtempSync(path.join(tmpdir(), 'signet-pkcs11-stack-'));
    dataDir = path.join(dir, 'data');
    const init = await initDataDir({
      dataDir,
      port: 0,
      publicUrl: 'http://127.0.0.1:8080',
      log: () => {},
      pkcs11: {
        module: token.module,
        tokenLabel: 'ca-token',
        rootTokenLabel: 'root-token',
        pin: token.pin,
        pinFile: token.pinFile,
      },
    });
    rootPem = readFileSync(init.rootCertificateFile, 'utf8');
    writeFileSync(path.join(dir, 'root.pem'), rootPem);
    process.env.SIGNET_LOG_LEVEL = 'silent';
    serving = await serveDataDir({ dataDir, port: 0 });
    const apiKeys = serving.runtime.repositories.apiKeys;
    issuerKey = (await createApiKey(apiKeys, { roles: ['issuer'], policies: ['web-server'] })).key;
    revokerKey = (await createApiKey(apiKeys, { roles: ['revoker'] })).key;
  }, 180_000);

  afterAll(async () => {
    await serving?.stop();
    if (previousConf === undefined) delete process.env.SOFTHSM2_CONF;
    else process.env.SOFTHSM2_CONF = previousConf;
    if (dir) rmSync(dir, { recursive: true, force: true });
    token?.cleanup();
  });

  it('records each partition on its token and each issuer key as a pkcs11: URI', async () => {
    const config = readFileSync(path.join(dataDir, 'signet.yaml'), 'utf8');
    expect(config).toContain(`tokenPinFile: ${token.pinFile}`);
    expect(config).not.toContain(token.pin);
    expect(JSON.parse(readFileSync(path.join(dataDir, 'hsm', 'issuing', 'pkcs11.json'), 'utf8'))).toEqual({
      module: token.module,
      tokenLabel: 'ca-token',
    });
    expect(
      JSON.parse(readFileSync(path.join(dataDir, 'hsm', 'root', 'pkcs11.json'), 'utf8')).tokenLabel,
    ).toBe('root-token');
    const issuers = await serving.runtime.repositories.issuers.list();
    expect(Object.fromEntries(issuers.map((i) => [i.id, i.keyUri]))).toEqual({
      'dev-root': 'pkcs11:token=root-token;object=dev-root',
      'dev-intermediate': 'pkcs11:token=ca-token;object=dev-intermediate',
    });
    const status = await [...serving.runtime.partitions.values()][0]!.status();
    expect(status).toMatchObject({ backend: 'pkcs11', token: { label: 'ca-token', module: token.module } });
  });

  it('issues a certificate signed on the token, which openssl verifies up to the root', async () => {
    const { status, body } = await issue('leaf', 'www.example.com');
    expect(status).toBe(201);
    const issued = JSON.parse(body.toString('utf8'));
    writeFileSync(path.join(dir, 'leaf.pem'), issued.certificate);
    writeFileSync(path.join(dir, 'chain.pem'), issued.chain.join(''));
    const verify = spawnSync(
      'openssl',
      [
        'verify',
        '-x509_strict',
        '-CAfile',
        path.join(dir, 'root.pem'),
        '-untrusted',
        path.join(dir, 'chain.pem'),
        path.join(dir, 'leaf.pem'),
      ],
      { encoding: 'utf8' },
    );
    expect(`${verify.stdout}${verify.stderr}`).toContain(': OK');
  });

  it('answers OCSP good then revoked, and lists the serial in a CRL openssl verifies, all signed on the token', async () => {
    const { body } = await issue('revokee', 'revokee.example.com');
    const issued = JSON.parse(body.toString('utf8'));
    const leaf = path.join(dir, 'revokee.pem');
    const intermediate = path.join(dir, 'intermediate.pem');
    writeFileSync(leaf, issued.certificate);
    writeFileSync(intermediate, issued.chain[0]);
    const ocsp = async () => {
      const { stdout, stderr } = await execFileAsync(
        'openssl',
        [
          'ocsp',
          '-issuer',
          intermediate,
          '-cert',
          leaf,
          '-url',
          `${serving.server.url}/ocsp`,
          '-CAfile',
          path.join(dir, 'root.pem'),
        ],
        { encoding: 'utf8' },
      );
      return `${stdout}${stderr}`;
    };
    const good = await ocsp();
    expect(good).toContain('Response verify OK');
    expect(good).toContain(`${leaf}: good`);
    const revoked = await curl([
      '-X',
      'POST',
      '-H',
      `authorization: Bearer ${revokerKey}`,
      '-H',
      'content-type: application/json',
      '--data-binary',
      '{"reason":"keyCompromise"}',
      `${serving.server.url}/v1/certificates/${issued.serialNumber}/revoke`,
    ]);
    expect(revoked.status).toBe(200);
    const after = await ocsp();
    expect(after).toContain('Response verify OK');
    expect(after).toMatch(/: revoked[\s\S]*Reason: keyCompromise/);

    // The CRL writer publishes after its debounce (crl.debounce PT0.1S in signet.yaml).
    const crlFile = path.join(dir, 'intermediate.crl');
    let text = '';
    for (let i = 0; i < 40 && !text.toUpperCase().includes(issued.serialNumber.toUpperCase()); i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const crl = await curl([`${serving.server.url}/crl/dev-intermediate.crl`]);
      if (crl.status !== 200) continue;
      writeFileSync(crlFile, crl.body);
      const check = spawnSync(
        'openssl',
        ['crl', '-inform', 'DER', '-in', crlFile, '-CAfile', intermediate, '-noout', '-text'],
        { encoding: 'utf8' },
      );
      text = `${check.stdout}${check.stderr}`;
    }
    expect(text).toContain('verify OK');
    expect(text.toUpperCase()).toContain(issued.serialNumber.toUpperCase());
  }, 60_000);

  it('answers 503 with Retry-After while the issuing token is gone, and issues again once it is back', async () => {
    const folder = tokenFolder('ca-token');
    const away = `${folder}.away`;
    renameSync(folder, away);
    let restored = false;
    try {
      const gone = await issue('while-gone', 'gone.example.com');
      expect(gone.status).toBe(503);
      expect(gone.headers.toLowerCase()).toMatch(/retry-after: \d+/);
      expect(JSON.parse(gone.body.toString('utf8')).code).toBe('hsm.unavailable');
      renameSync(away, folder);
      restored = true;
      // The partition reopens the token at most once a second.
      let status = 0;
      for (let i = 0; i < 20 && status !== 201; i++) {
        await new Promise((resolve) => setTimeout(resolve, 600));
        status = (await issue(`back-${i}`, 'back.example.com')).status;
      }
      expect(status).toBe(201);
    } finally {
      if (!restored) renameSync(away, folder);
    }
  }, 60_000);
});
