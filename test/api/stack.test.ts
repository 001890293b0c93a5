import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/api/app.ts';
import { createApiKey } from '../../src/api/auth/api-keys.ts';
import type { AppDeps } from '../../src/api/deps.ts';
import type { Role } from '../../src/api/env.ts';
import { initDataDir } from '../../src/cli/init.ts';
import { type Serving, serveDataDir } from '../../src/cli/serve.ts';
import { signDevRootCrl } from '../helpers/dev-root-crl.ts';
import { hasTool } from '../helpers/tools.ts';
import { crlPem } from '../revocation/helpers/pki.ts';
import { type CallOptions, caller, contract, logSink } from './helpers/harness.ts';

/**
 * The API on the real service: a data folder made by `signet init`, the partition process,
 * PGlite with the real migrations, the shipped policies and the real CA. Requests go through
 * app.request (every response held to openapi.yaml) and through the listening server with curl,
 * with openssl making the keys and CSRs and verifying what comes back.
 */
const haveTools = hasTool('openssl', ['version']) && hasTool('curl', ['--version']);
const ROLES: Role[] = ['issuer', 'revoker', 'auditor', 'admin'];

let dir: string;
let dataDir: string;
let serving: Serving;
let deps: AppDeps;
let call: ReturnType<typeof caller>;
let logs: ReturnType<typeof logSink>;
let adminKeyFile: string;
let rootPem: string;
const keys = {} as Record<Role, string>;
/** Key material, CSR bodies, API keys and JWSs used in this file: none may reach a log line. */
const secrets: string[] = [];

function openssl(args: string[]): string {
  return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A new P-256 key and CSR for `names` (DNS SANs), PEM and DER. */
function makeCsr(
  name: string,
  names: string[],
  subject = `/CN=${names[0]}`,
): { pem: string; der: Buffer; keyFile: string } {
  const keyFile = path.join(dir, `${name}.key`);
  const pemFile = path.join(dir, `${name}.csr`);
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
    subject,
    '-addext',
    `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`,
    '-out',
    pemFile,
  ]);
  const der = execFileSync('openssl', ['req', '-in', pemFile, '-outform', 'DER']);
  secrets.push(readFileSync(keyFile, 'utf8').split('\n')[1]!, readFileSync(pemFile, 'utf8').split('\n')[1]!);
  return { pem: readFileSync(pemFile, 'utf8'), der, keyFile };
}

/** openssl verify of a leaf against the root, with the given intermediates. */
function verifyChain(name: string, leafPem: string, intermediatesPem: string): string {
  const leafFile = path.join(dir, `${name}.pem`);
  const chainFile = path.join(dir, `${name}-chain.pem`);
  const rootFile = path.join(dir, 'root.pem');
  writeFileSync(leafFile, leafPem);
  writeFileSync(chainFile, intermediatesPem);
  writeFileSync(rootFile, rootPem);
  const result = spawnSync(
    'openssl',
    [
      'verify',
      '-x509_strict',
      '-purpose',
      'sslserver',
      '-CAfile',
      rootFile,
      '-untrusted',
      chainFile,
      leafFile,
    ],
    {
      encoding: 'utf8',
    },
  );
  return `${result.stdout}${result.stderr}`.replace(leafFile, 'leaf');
}

// The server runs in this process: clients must run asynchronously, or they would wait on a
// server whose event loop they block.
const execFileAsync = promisify(execFile);

async function curl(args: string[]): Promise<{ status: number; headers: string; body: Buffer }> {
  const headersFile = path.join(dir, `curl-headers-${Math.random().toString(36).slice(2)}.txt`);
  const { stdout: body } = await execFileAsync(
    'curl',
    ['-sS', '--max-time', '60', '-D', headersFile, ...args],
    {
      maxBuffer: 1 << 20,
      encoding: 'buffer',
    },
  );
  const headers = readFileSync(headersFile, 'utf8');
  const status = Number(/^HTTP\/[\d.]+ (\d{3})/m.exec(headers)?.[1]);
  return { status, headers, body };
}

const bearer = (role: Role) => ['-H', `authorization: Bearer ${keys[role]}`];

describe.skipIf(!haveTools)('the API on the real service', () => {
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-api-stack-'));
    dataDir = path.join(dir, 'data');
    const init = await initDataDir({ dataDir, port: 0, publicUrl: 'http://127.0.0.1:8080', log: () => {} });
    adminKeyFile = init.adminKeyFile;
    rootPem = readFileSync(init.rootCertificateFile, 'utf8');
    process.env.SIGNET_LOG_LEVEL = 'silent';
    serving = await serveDataDir({ dataDir, port: 0 });
    const { runtime } = serving;
    logs = logSink();
    deps = {
      clock: runtime.clock,
      logger: logs.logger,
      ca: runtime.ca,
      renewal: runtime.renewal,
      apiKeys: runtime.repositories.apiKeys,
      idempotency: runtime.repositories.idempotency,
      certificates: runtime.repositories.certificates,
      issuers: runtime.repositories.issuers,
      policies: runtime.policies,
      audit: runtime.repositories.audit,
      readiness: {
        database: () => runtime.database.ping(),
        partition: () => [...runtime.partitions.values()][0]!.status(),
      },
      ...(runtime.revocation ? { revocation: runtime.revocation } : {}),
      // The ACME server of signet.yaml's `dev` directory: its admin route is in openapi.yaml.
      ...(serving.acme ? { acme: serving.acme } : {}),
    };
    call = caller(createApp(deps));
    keys.admin = readFileSync(adminKeyFile, 'utf8').trim();
    for (const role of ['issuer', 'revoker', 'auditor'] as const) {
      keys[role] = (
        await createApiKey(deps.apiKeys, { roles: [role], policies: role === 'issuer' ? ['web-server'] : [] })
      ).key;
    }
  }, 180_000);

  afterAll(async () => {
    await serving?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  describe('issuance', () => {
    it('issues from a JSON body posted with curl, and openssl verifies the chain up to the root', async () => {
      const csr = makeCsr('curl-json', ['www.example.com']);
      const bodyFile = path.join(dir, 'body.json');
      writeFileSync(bodyFile, JSON.stringify({ csr: csr.pem, policy: 'web-server', validity: 'P30D' }));
      const { status, headers, body } = await curl([
        '-X',
        'POST',
        ...bearer('issuer'),
        '-H',
        'content-type: application/json',
        '--data-binary',
        `@${bodyFile}`,
        `${serving.server.url}/v1/certificates`,
      ]);
      expect(status).toBe(201);
      const issued = JSON.parse(body.toString('utf8'));
      expect(headers.toLowerCase()).toContain(`location: /v1/certificates/${issued.serialNumber}`);
      expect(issued).toMatchObject({ policy: 'web-server', issuer: 'dev-intermediate' });
      expect(verifyChain('curl-json', issued.certificate, issued.chain.join(''))).toContain('leaf: OK');
      // 30 days, counted inclusively (BR §1.6.1), so notAfter - notBefore is 30 days less a second.
      const lifetime = new Date(issued.notAfter).getTime() - new Date(issued.notBefore).getTime();
      expect(lifetime).toBeGreaterThanOrEqual(30 * 86_400_000 - 1000);
      expect(lifetime).toBeLessThanOrEqual(30 * 86_400_000 + 60_000);
      const leaf = new X509Certificate(issued.certificate);
      expect(leaf.checkHost('www.example.com')).toBe('www.example.com');
      expect(issued.chain.map((pem: string) => new X509Certificate(pem).subject)).not.toContain(
        new X509Certificate(rootPem).subject,
      );
    });

    it('issues from a raw DER application/pkcs10 body with ?policy=, answering the PEM chain itself', async () => {
      const csr = makeCsr('curl-raw', ['api.example.com']);
      const derFile = path.join(dir, 'curl-raw.der');
      writeFileSync(derFile, csr.der);
      const { status, headers, body } = await curl([
        '-X',
        'POST',
        ...bearer('issuer'),
        '-H',
        'content-type: application/pkcs10',
        '-H',
        'accept: application/pem-certificate-chain',
        '--data-binary',
        `@${derFile}`,
        `${serving.server.url}/v1/certificates?policy=web-server`,
      ]);
      expect(status).toBe(201);
      expect(headers.toLowerCase()).toContain('content-type: application/pem-certificate-chain');
      const pems = body
        .toString('utf8')
        .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g)!;
      expect(pems.length).toBe(2);
      expect(verifyChain('curl-raw', pems[0]!, pems.slice(1).join(''))).toContain('leaf: OK');
    });

    it('refuses a name the policy does not allow with 403 and every violation, and stores nothing', async () => {
      const before = (await deps.certificates.list({ limit: 1000 })).items.length;
      const csr = makeCsr('refused', ['www.example.org', 'internal.example.com']);
      const { response, body } = await call('POST', '/v1/certificates', {
        key: keys.issuer,
        body: { csr: csr.pem, policy: 'web-server' },
      });
      expect(response.status).toBe(403);
      expect(body.code).toBe('policy.refused');
      expect(body.violations.map((v: { code: string }) => v.code).sort()).toEqual([
        'policy.cn_not_in_sans',
        'policy.dns_not_allowed',
        'policy.san_denied',
      ]);
      expect((await deps.certificates.list({ limit: 1000 })).items.length).toBe(before);
    });

    it.each([
      { name: 'garbage instead of a CSR', csr: 'hello', code: 'csr.pem_invalid' },
      { name: 'a CSR whose signature does not verify', csr: 'tampered', code: 'csr.signature_invalid' },
    ])('refuses $name with 400 $code', async ({ csr, code }) => {
      let text = csr;
      if (csr === 'tampered') {
        const der = Buffer.from(makeCsr('tampered', ['t.example.com']).der);
        der[der.length - 10]! ^= 0x01;
        text = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
      }
      const { response, body } = await call('POST', '/v1/certificates', {
        key: keys.issuer,
        body: { csr: text, policy: 'web-server' },
      });
      expect(response.status).toBe(400);
      expect(body.code).toMatch(/^csr\./);
      expect([code, 'csr.malformed']).toContain(body.code);
    });

    it('answers an unknown policy with 400 policy.unknown', async () => {
      const csr = makeCsr('nopolicy', ['n.example.com']);
      const { response, body } = await call('POST', '/v1/certificates', {
        key: keys.admin,
        body: { csr: csr.pem, policy: 'no-such-policy' },
      });
      expect(response.status).toBe(400);
      expect(body.code).toBe('policy.unknown');
    });

    it('replays an issuance for the same Idempotency-Key and body instead of issuing twice', async () => {
      const csr = makeCsr('idem', ['idem.example.com']);
      const options: CallOptions = {
        key: keys.issuer,
        body: { csr: csr.pem, policy: 'web-server' },
        headers: { 'idempotency-key': 'idem-1' },
      };
      const first = await call('POST', '/v1/certificates', options);
      const second = await call('POST', '/v1/certificates', options);
      expect(first.response.status).toBe(201);
      expect(second.body.serialNumber).toBe(first.body.serialNumber);
      expect(second.response.headers.get('location')).toBe(first.response.headers.get('location'));
      const other = await call('POST', '/v1/certificates', {
        ...options,
        body: { csr: csr.pem, policy: 'web-server', validity: 'P1D' },
      });
      expect(other.response.status).toBe(422);
    });

    it('evaluates a request without signing, with a decision for every name', async () => {
      const before = (await deps.certificates.list({ limit: 1000 })).items.length;
      const csr = makeCsr('dry', ['dry.example.com', 'evil.example.org']);
      const { response, body } = await call('POST', '/v1/policies/web-server/evaluate', {
        key: keys.issuer,
        body: { csr: csr.pem },
      });
      expect(response.status).toBe(200);
      expect(body.allowed).toBe(false);
      expect(body.decisions).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ value: 'dry.example.com', allowed: true }),
          expect.objectContaining({ value: 'evil.example.org', allowed: false }),
        ]),
      );
      expect(body.violations).toEqual([expect.objectContaining({ code: 'policy.dns_not_allowed' })]);
      expect((await deps.certificates.list({ limit: 1000 })).items.length).toBe(before);
    });
  });

  describe('reading certificates', () => {
    let mine: string;
    let theirs: string;

    beforeAll(async () => {
      const issue = async (key: string, host: string) =>
        (
          await call('POST', '/v1/certificates', {
            key,
            body: { csr: makeCsr(host, [host]).pem, policy: 'web-server' },
          })
        ).body.serialNumber as string;
      mine = await issue(keys.issuer, 'mine.example.com');
      theirs = await issue(keys.admin, 'theirs.example.com');
    });

    it('answers a certificate as JSON, DER or PEM, and accepts the serial with colons and in upper case', async () => {
      const json = await call('GET', `/v1/certificates/${mine}`, { key: keys.auditor });
      expect(json.body).toMatchObject({
        serialNumber: mine,
        status: 'valid',
        policy: 'web-server',
        requester: expect.stringMatching(/^apikey:/),
      });
      const der = await call('GET', `/v1/certificates/${mine}`, {
        key: keys.auditor,
        headers: { accept: 'application/pkix-cert' },
      });
      expect(new X509Certificate(der.body as Buffer).serialNumber.toLowerCase()).toBe(
        mine.replace(/^00/, ''),
      );
      const pem = await call('GET', `/v1/certificates/${mine.toUpperCase().match(/../g)!.join(':')}`, {
        key: keys.revoker,
        headers: { accept: 'application/x-pem-file' },
      });
      expect((pem.body as Buffer).toString('utf8')).toBe(json.body.certificate);
    });

    it('lets the issuer role read its own certificates and no one else', async () => {
      expect((await call('GET', `/v1/certificates/${mine}`, { key: keys.issuer })).response.status).toBe(200);
      const other = await call('GET', `/v1/certificates/${theirs}`, { key: keys.issuer });
      expect(other.response.status).toBe(404);
      const list = await call('GET', '/v1/certificates?limit=500', { key: keys.issuer });
      const serials = list.body.items.map((item: { serialNumber: string }) => item.serialNumber);
      expect(serials).toContain(mine);
      expect(serials).not.toContain(theirs);
    });

    it('pages through certificates with an opaque cursor and filters them', async () => {
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const page: {
          body: { items: { serialNumber: string; policy: string }[]; nextCursor: string | null };
        } = await call(
          'GET',
          `/v1/certificates?limit=2&policy=web-server&status=valid${cursor ? `&cursor=${cursor}` : ''}`,
          { key: keys.auditor },
        );
        expect(page.body.items.length).toBeLessThanOrEqual(2);
        seen.push(...page.body.items.map((item) => item.serialNumber));
        cursor = page.body.nextCursor;
      } while (cursor);
      expect(new Set(seen).size).toBe(seen.length);
      expect(seen).toEqual(expect.arrayContaining([mine, theirs]));
      const none = await call('GET', '/v1/certificates?status=revoked', { key: keys.auditor });
      expect(none.body.items).toEqual([]);
      const expiring = await call(
        'GET',
        `/v1/certificates?expiresBefore=${encodeURIComponent('2000-01-01T00:00:00Z')}`,
        { key: keys.auditor },
      );
      expect(expiring.body.items).toEqual([]);
    });

    it.each([
      {
        name: 'a serial that is not hex',
        path: '/v1/certificates/xyz',
        code: 'request.serial_invalid',
        status: 400,
      },
      {
        name: 'a serial never issued',
        path: '/v1/certificates/0123456789abcdef',
        code: 'certificate.not_found',
        status: 404,
      },
      {
        name: 'a damaged cursor',
        path: '/v1/certificates?cursor=bm90LWEtY3Vyc29y',
        code: 'request.cursor_invalid',
        status: 400,
      },
      {
        name: 'a limit over the maximum',
        path: '/v1/certificates?limit=100000',
        code: 'request.invalid_query',
        status: 400,
      },
      {
        name: 'an unknown status',
        path: '/v1/certificates?status=lost',
        code: 'request.invalid_query',
        status: 400,
      },
      {
        name: 'an unknown query parameter',
        path: '/v1/certificates?colour=red',
        code: 'request.invalid_query',
        status: 400,
      },
    ])('answers $name with $status $code', async ({ path: target, code, status }) => {
      const { response, body } = await call('GET', target, { key: keys.auditor });
      expect(response.status).toBe(status);
      expect(body.code).toBe(code);
    });
  });

  describe('issuers, policies, audit and operations', () => {
    it('lists the issuers and answers each one', async () => {
      const list = await call('GET', '/v1/issuers', { key: keys.revoker });
      const ids = list.body.items.map((issuer: { id: string }) => issuer.id);
      expect(ids).toEqual(expect.arrayContaining(['dev-root', 'dev-intermediate']));
      const one = await call('GET', '/v1/issuers/dev-intermediate', { key: keys.issuer });
      expect(one.body).toMatchObject({
        id: 'dev-intermediate',
        parent: 'dev-root',
        keyAlgorithm: expect.stringMatching(/^ecdsa-|^rsa-|^ed25519/),
      });
      expect((await call('GET', '/v1/issuers/nope', { key: keys.issuer })).body.code).toBe(
        'issuer.not_found',
      );
    });

    it('serves issuer certificates and chains to anyone, as DER, PEM and a chain up to the root', async () => {
      const der = await curl([`${serving.server.url}/v1/issuers/dev-intermediate/certificate`]);
      expect(der.status).toBe(200);
      expect(der.headers.toLowerCase()).toContain('content-type: application/pkix-cert');
      const intermediate = new X509Certificate(der.body);
      const pem = await curl([
        '-H',
        'accept: application/x-pem-file',
        `${serving.server.url}/v1/issuers/dev-intermediate/certificate`,
      ]);
      expect(new X509Certificate(pem.body).fingerprint256).toBe(intermediate.fingerprint256);
      const chain = await curl([`${serving.server.url}/v1/issuers/dev-intermediate/chain`]);
      expect(chain.headers.toLowerCase()).toContain('content-type: application/pem-certificate-chain');
      const pems = chain.body
        .toString('utf8')
        .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g)!;
      expect(pems.map((p) => new X509Certificate(p).fingerprint256)).toEqual([
        intermediate.fingerprint256,
        new X509Certificate(rootPem).fingerprint256,
      ]);
      expect((await curl([`${serving.server.url}/v1/issuers/nope/chain`])).status).toBe(404);
    });

    it('lists the shipped policies and shows one as loaded', async () => {
      const list = await call('GET', '/v1/policies', { key: keys.auditor });
      expect(list.body.items.map((p: { name: string }) => p.name)).toEqual([
        'client-mtls',
        'spiffe-workload',
        'web-server',
      ]);
      const one = await call('GET', '/v1/policies/web-server', { key: keys.revoker });
      expect(one.body).toMatchObject({
        name: 'web-server',
        issuer: 'dev-intermediate',
        policy: expect.any(Object),
      });
      expect((await call('GET', '/v1/policies/nope', { key: keys.revoker })).body.code).toBe(
        'policy.not_found',
      );
      const reload = await call('POST', '/v1/policies/reload', { key: keys.admin });
      expect(reload.body.loaded).toEqual(['client-mtls', 'spiffe-workload', 'web-server']);
    });

    it('shows the audit log to auditors, filtered and paged', async () => {
      const issued = await call('GET', '/v1/audit?action=certificate.issue&decision=allowed&limit=1', {
        key: keys.auditor,
      });
      expect(issued.body.items).toHaveLength(1);
      expect(issued.body.items[0]).toMatchObject({ action: 'certificate.issue', decision: 'allowed' });
      expect(issued.body.nextCursor).toEqual(expect.any(String));
      const next = await call(
        'GET',
        `/v1/audit?action=certificate.issue&decision=allowed&limit=1&cursor=${issued.body.nextCursor}`,
        { key: keys.auditor },
      );
      expect(next.body.items[0].id).not.toBe(issued.body.items[0].id);
    });

    it('answers liveness, readiness with the partition unsealed, and its own contract', async () => {
      expect((await call('GET', '/healthz')).body).toEqual({ status: 'ok' });
      // The dev root's CRL from init lasts a year: nothing to warn about yet.
      expect((await call('GET', '/readyz')).body).toEqual({
        status: 'ready',
        checks: { database: 'ok', partition: 'ok' },
        warnings: [],
      });
      const listener = await curl([`${serving.server.url}/readyz`]);
      expect(JSON.parse(listener.body.toString('utf8')).warnings).toEqual([]);
      const yaml = await curl([`${serving.server.url}/openapi.yaml`]);
      expect(yaml.body.toString('utf8')).toContain('openapi: 3.1.0');
    });
  });

  describe('revocation, CRLs and OCSP', () => {
    let serial: string;
    let leafFile: string;
    let keyFile: string;
    const intermediateFile = () => path.join(dir, 'intermediate.pem');

    beforeAll(async () => {
      const csr = makeCsr('revokee', ['revokee.example.com']);
      keyFile = csr.keyFile;
      const issued = await call('POST', '/v1/certificates', {
        key: keys.issuer,
        body: { csr: csr.pem, policy: 'web-server' },
      });
      serial = issued.body.serialNumber;
      leafFile = path.join(dir, 'revokee.pem');
      writeFileSync(leafFile, issued.body.certificate);
      writeFileSync(intermediateFile(), issued.body.chain[0]);
      writeFileSync(path.join(dir, 'root.pem'), rootPem);
    });

    const ocspStatus = async (extra: string[] = []) => {
      const { stdout, stderr } = await execFileAsync(
        'openssl',
        [
          'ocsp',
          '-issuer',
          intermediateFile(),
          '-cert',
          leafFile,
          '-url',
          `${serving.server.url}/ocsp`,
          '-CAfile',
          path.join(dir, 'root.pem'),
          ...extra,
        ],
        { encoding: 'utf8' },
      );
      return `${stdout}${stderr}`;
    };

    it('answers openssl ocsp (POST) good, then revoked after a revoker revokes, and revoking again changes nothing', async () => {
      expect(await ocspStatus()).toContain(`${leafFile}: good`);
      const first = await call('POST', `/v1/certificates/${serial}/revoke`, {
        key: keys.revoker,
        body: { reason: 'superseded' },
      });
      expect(first.response.status).toBe(200);
      expect(first.body).toMatchObject({
        serialNumber: serial,
        status: 'revoked',
        reason: 'superseded',
        outcome: 'revoked',
      });
      const again = await call('POST', `/v1/certificates/${serial}/revoke`, {
        key: keys.admin,
        body: { reason: 'cessationOfOperation' },
      });
      expect(again.body).toMatchObject({
        reason: 'superseded',
        outcome: 'unchanged',
        revokedAt: first.body.revokedAt,
      });
      expect(await ocspStatus()).toMatch(new RegExp(`${leafFile}: revoked[\\s\\S]*Reason: superseded`));
      expect((await call('GET', `/v1/certificates/${serial}`, { key: keys.auditor })).body).toMatchObject({
        status: 'revoked',
      });
    });

    it('answers OCSP by GET with the base64 request in the path, cacheable, and never answers JSON', async () => {
      const reqFile = path.join(dir, 'ocsp-req.der');
      await execFileAsync('openssl', [
        'ocsp',
        '-issuer',
        intermediateFile(),
        '-cert',
        leafFile,
        '-no_nonce',
        '-reqout',
        reqFile,
      ]);
      const encoded = encodeURIComponent(readFileSync(reqFile).toString('base64'));
      const get = await curl([`${serving.server.url}/ocsp/${encoded}`]);
      expect(get.status).toBe(200);
      expect(get.headers.toLowerCase()).toContain('content-type: application/ocsp-response');
      expect(get.headers.toLowerCase()).toMatch(/cache-control: public, max-age=\d+/);
      const respFile = path.join(dir, 'ocsp-resp.der');
      writeFileSync(respFile, get.body);
      const { stdout, stderr } = await execFileAsync(
        'openssl',
        [
          'ocsp',
          '-respin',
          respFile,
          '-issuer',
          intermediateFile(),
          '-cert',
          leafFile,
          '-CAfile',
          path.join(dir, 'root.pem'),
        ],
        { encoding: 'utf8' },
      );
      expect(`${stdout}${stderr}`).toContain('Response verify OK');

      for (const [args, name] of [
        [
          [
            '-X',
            'POST',
            '-H',
            'content-type: application/ocsp-request',
            '--data-binary',
            'garbage',
            `${serving.server.url}/ocsp`,
          ],
          'garbage POST',
        ],
        [[`${serving.server.url}/ocsp/not!base64`], 'garbage GET'],
        [
          [
            '-X',
            'POST',
            '-H',
            'content-type: application/json',
            '--data-binary',
            '{}',
            `${serving.server.url}/ocsp`,
          ],
          'JSON POST',
        ],
      ] as const) {
        const answer = await curl([...args]);
        expect(answer.status, name).toBe(200);
        expect(answer.headers.toLowerCase(), name).toContain('content-type: application/ocsp-response');
        // OCSPResponse { responseStatus malformedRequest (1) }: 30 03 0a 01 01
        expect(answer.body.toString('hex'), name).toBe('30030a0101');
      }
    });

    it('publishes a CRL that openssl verifies, listing the revoked serial, with ETag, Last-Modified and 304', async () => {
      await serving.runtime.revocation!.scheduler.publishNow('dev-intermediate');
      const crl = await curl([`${serving.server.url}/crl/dev-intermediate.crl`]);
      expect(crl.status).toBe(200);
      const headers = crl.headers.toLowerCase();
      expect(headers).toContain('content-type: application/pkix-crl');
      expect(headers).toMatch(/cache-control: public, max-age=\d+/);
      const etag = /etag: ("[0-9a-f]{64}")/.exec(headers)![1]!;
      const lastModified = /last-modified: (.+)\r?\n/i.exec(crl.headers)![1]!.trim();
      const crlFile = path.join(dir, 'dev-intermediate.crl');
      writeFileSync(crlFile, crl.body);
      const { stdout, stderr } = await execFileAsync(
        'openssl',
        ['crl', '-inform', 'DER', '-in', crlFile, '-CAfile', intermediateFile(), '-noout', '-text'],
        { encoding: 'utf8' },
      );
      expect(`${stdout}${stderr}`).toContain('verify OK');
      expect(stdout.replaceAll(':', '').toLowerCase()).toContain(serial.replace(/^00/, ''));

      expect(
        (await curl(['-H', `if-none-match: ${etag}`, `${serving.server.url}/crl/dev-intermediate.crl`]))
          .status,
      ).toBe(304);
      expect(
        (
          await curl([
            '-H',
            `if-modified-since: ${lastModified}`,
            `${serving.server.url}/crl/dev-intermediate.crl`,
          ])
        ).status,
      ).toBe(304);
      expect(
        (await curl(['-H', 'if-none-match: "other"', `${serving.server.url}/crl/dev-intermediate.crl`]))
          .status,
      ).toBe(200);
      expect((await curl([`${serving.server.url}/crl/dev-intermediate/0.crl`])).body.equals(crl.body)).toBe(
        true,
      );
      expect((await curl([`${serving.server.url}/crl/dev-intermediate/7.crl`])).status).toBe(404);
      expect((await curl([`${serving.server.url}/crl/nobody.crl`])).status).toBe(404);
      const viaApp = await call('GET', '/crl/dev-intermediate.crl');
      expect(viaApp.response.status).toBe(200);
    });

    it("serves the dev root's CRL from init, then a newer one an admin posts or `signet crl import` sends through the running server", async () => {
      const rootCrl = async () => {
        const crl = await curl([`${serving.server.url}/crl/dev-root.crl`]);
        expect(crl.status).toBe(200);
        expect(crl.headers.toLowerCase()).toMatch(/cache-control: public, max-age=\d+, no-transform/);
        const file = path.join(dir, 'dev-root.crl');
        writeFileSync(file, crl.body);
        const { stdout } = await execFileAsync(
          'openssl',
          ['crl', '-inform', 'DER', '-in', file, '-CAfile', path.join(dir, 'root.pem'), '-noout', '-text'],
          { encoding: 'utf8' },
        );
        return { der: crl.body, text: stdout };
      };
      expect((await rootCrl()).text).toMatch(/X509v3 CRL Number: \n\s*1\n/);

      const now = Date.now();
      const sign = (number: bigint) =>
        signDevRootCrl(dataDir, {
          number,
          thisUpdate: new Date(now - 60_000),
          nextUpdate: new Date(now + 365 * 86_400_000),
        });
      const second = await sign(2n);
      const posted = await call('POST', '/v1/issuers/dev-root/crl', {
        key: keys.admin,
        raw: second,
        headers: { 'content-type': 'application/pkix-crl' },
      });
      expect(posted.response.status).toBe(200);
      expect(posted.body.crlNumber).toBe('2');
      expect((await rootCrl()).der.equals(Buffer.from(second))).toBe(true);

      const file = path.join(dir, 'dev-root-3.crl');
      writeFileSync(file, crlPem(await sign(3n)));
      const cli = async () => {
        try {
          const { stdout, stderr } = await execFileAsync(
            process.execPath,
            ['bin/signet.js', 'crl', 'import', '--issuer', 'dev-root', file, '--url', serving.server.url],
            { encoding: 'utf8', timeout: 60_000, env: { ...process.env, SIGNET_API_KEY: keys.admin } },
          );
          return { status: 0, stdout, stderr };
        } catch (error) {
          const failed = error as { code: number; stdout: string; stderr: string };
          return { status: failed.code, stdout: failed.stdout, stderr: failed.stderr };
        }
      };
      const imported = await cli();
      expect(imported.status).toBe(0);
      expect(JSON.parse(imported.stdout)).toMatchObject({ issuer: 'dev-root', crlNumber: '3' });
      expect((await rootCrl()).text).toMatch(/X509v3 CRL Number: \n\s*3\n/);
      const again = await cli();
      expect(again.status).toBe(1);
      expect(again.stderr).toContain('409 [crl.number_not_increasing]');
    });

    it.each([
      {
        name: 'certificateHold, which is not supported',
        body: { reason: 'certificateHold' },
        status: 400,
        code: 'revocation.reason_invalid',
      },
      {
        name: 'an unknown reason',
        body: { reason: 'keycompromised' },
        status: 400,
        code: 'revocation.reason_invalid',
      },
      {
        name: 'an invalidityDate in the future',
        body: { reason: 'keyCompromise', invalidityDate: '2999-01-01T00:00:00Z' },
        status: 400,
        code: 'revocation.invalidity_date_invalid',
      },
    ])('refuses to revoke with $name: $status $code', async ({ body, status, code }) => {
      const { response, body: problem } = await call('POST', `/v1/certificates/${serial}/revoke`, {
        key: keys.revoker,
        body,
      });
      expect(response.status).toBe(status);
      expect(problem.code).toBe(code);
    });

    it('says in the problem why certificateHold is refused', async () => {
      const { response, body: problem } = await call('POST', `/v1/certificates/${serial}/revoke`, {
        key: keys.revoker,
        body: { reason: 'certificateHold' },
      });
      expect(response.status).toBe(400);
      expect(problem.detail).toMatch(/certificateHold/);
      expect(problem.detail).toMatch(/not supported|permanent|hold/i);
    });

    it('answers 404 for revoking a serial never issued', async () => {
      const { response, body } = await call('POST', '/v1/certificates/0abc/revoke', {
        key: keys.revoker,
        body: { reason: 'unspecified' },
      });
      expect(response.status).toBe(404);
      expect(body.code).toBe('certificate.not_found');
    });

    it('renews by proof of key possession without a credential, for the same names (issue #32)', async () => {
      const csr = makeCsr('renew', ['renew.example.com']);
      const issued = await call('POST', '/v1/certificates', {
        key: keys.issuer,
        body: { csr: csr.pem, policy: 'web-server' },
      });
      const { importPKCS8, exportJWK, CompactSign } = await import('jose');
      const { createPrivateKey, createPublicKey } = await import('node:crypto');
      const privatePem = readFileSync(csr.keyFile, 'utf8');
      const jwk = await exportJWK(createPublicKey(createPrivateKey(privatePem)));
      const claims = { serial: issued.body.serialNumber, iat: Math.floor(Date.now() / 1000), jti: 'renew-1' };
      const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
        .setProtectedHeader({ alg: 'ES256', jwk })
        .sign(await importPKCS8(privatePem, 'ES256'));
      secrets.push(jws.split('.')[2]!);
      const renewed = await call('POST', `/v1/certificates/${issued.body.serialNumber}/renew`, {
        raw: jws,
        headers: { 'content-type': 'application/jose' },
      });
      expect(renewed.response.status).toBe(201);
      expect(renewed.body.serialNumber).not.toBe(issued.body.serialNumber);
      expect(new X509Certificate(renewed.body.certificate).subjectAltName).toBe('DNS:renew.example.com');
      expect(verifyChain('renewed', renewed.body.certificate, renewed.body.chain.join(''))).toContain(
        'leaf: OK',
      );
    });

    it('revokes by proof of key possession without a credential, once per jti', async () => {
      const csr = makeCsr('bykey', ['bykey.example.com']);
      const issued = await call('POST', '/v1/certificates', {
        key: keys.issuer,
        body: { csr: csr.pem, policy: 'web-server' },
      });
      const { importPKCS8, exportJWK, CompactSign } = await import('jose');
      const { createPrivateKey, createPublicKey } = await import('node:crypto');
      const privatePem = readFileSync(csr.keyFile, 'utf8');
      const jwk = await exportJWK(createPublicKey(createPrivateKey(privatePem)));
      const sign = async (jti: string) =>
        new CompactSign(
          new TextEncoder().encode(
            JSON.stringify({
              serial: issued.body.serialNumber,
              reason: 'keyCompromise',
              iat: Math.floor(Date.now() / 1000),
              jti,
            }),
          ),
        )
          .setProtectedHeader({ alg: 'ES256', jwk })
          .sign(await importPKCS8(privatePem, 'ES256'));
      const jws = await sign('jti-1');
      secrets.push(jws.split('.')[2]!);
      const revoked = await call('POST', '/v1/revocations/by-key', {
        raw: jws,
        headers: { 'content-type': 'application/jose' },
      });
      expect(revoked.response.status).toBe(200);
      expect(revoked.body).toMatchObject({
        serialNumber: issued.body.serialNumber,
        reason: 'keyCompromise',
        outcome: 'revoked',
      });
      const replay = await call('POST', '/v1/revocations/by-key', { body: { jws } });
      expect(replay.response.status).toBe(409);
      expect(replay.body.code).toBe('revocation.jti_replayed');
      const forged = await call('POST', '/v1/revocations/by-key', {
        raw: `${jws.slice(0, -4)}AAAA`,
        headers: { 'content-type': 'application/jose' },
      });
      expect(forged.response.status).toBe(400);
      expect(forged.body.code).toBe('revocation.jws_invalid');
      void keyFile;
    });
  });

  describe('every endpoint x every role', () => {
    interface Endpoint {
      method: string;
      path: () => string;
      /** Roles allowed besides admin. */
      roles: Role[] | 'all';
      body?: () => unknown;
    }
    let serial = '';
    const csr = () => makeCsr('matrix', ['matrix.example.com']).pem;
    const throwawayKeyId = async () => (await createApiKey(deps.apiKeys, { roles: ['auditor'] })).id;
    let keyId = '';
    const ENDPOINTS: Endpoint[] = [
      {
        method: 'POST',
        path: () => '/v1/certificates',
        roles: ['issuer'],
        body: () => ({ csr: csr(), policy: 'web-server' }),
      },
      { method: 'GET', path: () => '/v1/certificates', roles: ['issuer', 'revoker', 'auditor'] },
      { method: 'GET', path: () => `/v1/certificates/${serial}`, roles: ['issuer', 'revoker', 'auditor'] },
      {
        method: 'POST',
        path: () => '/v1/policies/web-server/evaluate',
        roles: ['issuer'],
        body: () => ({ csr: csr() }),
      },
      { method: 'POST', path: () => '/v1/policies/reload', roles: [] },
      { method: 'GET', path: () => '/v1/policies', roles: 'all' },
      { method: 'GET', path: () => '/v1/policies/web-server', roles: 'all' },
      { method: 'POST', path: () => '/v1/apikeys', roles: [], body: () => ({ roles: ['auditor'] }) },
      { method: 'GET', path: () => '/v1/apikeys', roles: [] },
      { method: 'DELETE', path: () => `/v1/apikeys/${keyId}`, roles: [] },
      {
        method: 'POST',
        path: () => '/v1/acme/eab-keys',
        roles: [],
        body: () => ({ directory: 'dev', policies: ['web-server'], expiresIn: 'P1D' }),
      },
      { method: 'GET', path: () => '/v1/issuers', roles: 'all' },
      { method: 'GET', path: () => '/v1/issuers/dev-intermediate', roles: 'all' },
      { method: 'GET', path: () => '/v1/audit', roles: ['auditor'] },
      {
        method: 'POST',
        path: () => `/v1/certificates/${serial}/revoke`,
        roles: ['revoker'],
        body: () => ({ reason: 'superseded' }),
      },
    ];
    const CASES = ENDPOINTS.flatMap((endpoint) =>
      ROLES.map((role) => ({
        endpoint,
        role,
        name: `${endpoint.method} ${endpoint.path
          .toString()
          .replace(/^\(\) => /, '')
          .replaceAll('`', '')}`,
        allowed: role === 'admin' || endpoint.roles === 'all' || endpoint.roles.includes(role),
      })),
    );

    beforeAll(async () => {
      serial = (
        await call('POST', '/v1/certificates', {
          key: keys.issuer,
          body: { csr: csr(), policy: 'web-server' },
        })
      ).body.serialNumber;
    });

    it.each(CASES)('$name as $role: allowed=$allowed', async ({ endpoint, role, allowed }) => {
      keyId = await throwawayKeyId();
      const before = (await deps.audit.list({ limit: 1 })).items[0]?.id ?? 0;
      const { response, body } = await call(endpoint.method, endpoint.path(), {
        key: keys[role],
        ...(endpoint.body ? { body: endpoint.body() } : {}),
      });
      if (allowed) {
        expect(response.status, JSON.stringify(body)).toBeLessThan(300);
        return;
      }
      expect(response.status).toBe(403);
      expect(body.code).toBe('auth.role_forbidden');
      // The refusal leaves exactly one audit record and nothing else.
      const after = (await deps.audit.list({ limit: 10 })).items.filter((event) => event.id > before);
      expect(after).toEqual([
        expect.objectContaining({ decision: 'denied', actor: expect.stringMatching(/^apikey:/) }),
      ]);
    });

    it.each(ENDPOINTS)(
      '$method $path refuses a request without a credential with 401, and an expired key with 403',
      async (endpoint) => {
        keyId = await throwawayKeyId();
        const anonymous = await call(
          endpoint.method,
          endpoint.path(),
          endpoint.body ? { body: endpoint.body() } : {},
        );
        expect(anonymous.response.status).toBe(401);
        expect(anonymous.body.code).toBe('auth.credential_missing');
        const expired = (
          await createApiKey(deps.apiKeys, { roles: ['admin'], expiresAt: new Date(Date.now() - 1000) })
        ).key;
        const late = await call(endpoint.method, endpoint.path(), {
          key: expired,
          ...(endpoint.body ? { body: endpoint.body() } : {}),
        });
        expect(late.response.status).toBe(403);
        expect(late.body.code).toBe('auth.key_expired');
      },
    );

    it('refuses an issuer key a policy it is not bound to with 403, leaving one audit record and no certificate', async () => {
      const before = (await deps.certificates.list({ limit: 1000 })).items.length;
      const csrText = makeCsr('unbound', ['alice@example.com'], '/CN=alice').pem;
      const { response, body } = await call('POST', '/v1/certificates', {
        key: keys.issuer,
        body: { csr: csrText, policy: 'client-mtls' },
      });
      expect(response.status).toBe(403);
      expect(body.code).toBe('policy.requester_not_bound');
      const [last] = (await deps.audit.list({ limit: 1 })).items;
      expect(last).toMatchObject({
        action: 'certificate.issue',
        decision: 'denied',
        target: 'policy:client-mtls',
      });
      expect((await deps.certificates.list({ limit: 1000 })).items.length).toBe(before);
    });
  });

  describe('the listening server', () => {
    it('answers errors as problem documents with the request id the logs carry', async () => {
      const bodyFile = path.join(dir, 'big.json');
      writeFileSync(bodyFile, JSON.stringify({ csr: 'A'.repeat(70 * 1024), policy: 'web-server' }));
      const big = await curl([
        '-X',
        'POST',
        ...bearer('issuer'),
        '-H',
        'content-type: application/json',
        '--data-binary',
        `@${bodyFile}`,
        `${serving.server.url}/v1/certificates`,
      ]);
      expect(big.status).toBe(413);
      expect(big.headers.toLowerCase()).toContain('content-type: application/problem+json');
      const problem = JSON.parse(big.body.toString('utf8'));
      expect(problem).toMatchObject({
        code: 'request.body_too_large',
        status: 413,
        requestId: expect.any(String),
      });
      expect(big.headers.toLowerCase()).toContain(`x-request-id: ${problem.requestId}`);

      const anonymous = await curl([`${serving.server.url}/v1/certificates`]);
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers.toLowerCase()).toContain('www-authenticate: bearer');
      expect(JSON.parse(anonymous.body.toString('utf8')).code).toBe('auth.credential_missing');
    });

    it('refuses a request head over the header limit with 431', async () => {
      const huge = await curl(['-H', `x-filler: ${'a'.repeat(32 * 1024)}`, `${serving.server.url}/healthz`]);
      expect(huge.status).toBe(431);
    });
  });

  describe('signet apikey through the running server', () => {
    const signet = async (args: string[], env: Record<string, string> = {}) => {
      try {
        const { stdout, stderr } = await execFileAsync(
          process.execPath,
          ['bin/signet.js', 'apikey', ...args, '--url', serving.server.url],
          {
            encoding: 'utf8',
            timeout: 60_000,
            env: { ...process.env, SIGNET_API_KEY: '', ...env },
          },
        );
        return { status: 0, stdout, stderr };
      } catch (error) {
        const failed = error as { code: number; stdout: string; stderr: string };
        return { status: failed.code, stdout: failed.stdout, stderr: failed.stderr };
      }
    };

    it('creates a key that works, lists it without its secret, and revokes it', async () => {
      const created = await signet([
        'create',
        '--role',
        'auditor',
        '--description',
        'from the CLI',
        '--expires-in',
        'P1D',
        '--api-key-file',
        adminKeyFile,
      ]);
      expect(created.stderr).toContain('shown only this once');
      expect(created.status).toBe(0);
      const key = created.stdout.trim();
      expect(key).toMatch(/^sgk_[0-9a-f]{16}_/);
      expect((await call('GET', '/v1/audit?limit=1', { key })).response.status).toBe(200);
      const id = key.split('_')[1]!;
      const listed = await signet(['list'], { SIGNET_API_KEY: keys.admin });
      expect(listed.status).toBe(0);
      expect(listed.stdout).toContain(id);
      // The secret is everything after `sgk_<id>_`; base64url may itself contain '_'.
      const secret = key.slice(`sgk_${id}_`.length);
      expect(secret.length).toBe(43);
      expect(listed.stdout).not.toContain(secret);
      const revoked = await signet(['revoke', id, '--api-key-file', adminKeyFile]);
      expect(revoked.status).toBe(0);
      expect((await call('GET', '/v1/audit?limit=1', { key })).response.status).toBe(401);
    });

    it('exits 1 with the server reason when the key may not manage keys, and 2 on a usage error', async () => {
      const refused = await signet(['list'], { SIGNET_API_KEY: keys.auditor });
      expect(refused.status).toBe(1);
      expect(refused.stderr).toContain('auth.role_forbidden');
      expect((await signet(['create', '--api-key-file', adminKeyFile])).status).toBe(2);
      expect((await signet(['frobnicate'])).status).toBe(2);
    });

    it('finds the server and the admin key from the data folder and SIGNET_PORT, as issue and revoke do', async () => {
      // No --url and no key given (issue #33): signet.yaml says port 0 here, SIGNET_PORT the real one.
      const { SIGNET_API_KEY: _key, ...env } = process.env;
      const listed = await execFileAsync(
        process.execPath,
        ['bin/signet.js', 'apikey', 'list', '--data', dataDir],
        { encoding: 'utf8', timeout: 60_000, env: { ...env, SIGNET_PORT: String(serving.server.port) } },
      );
      expect(listed.stdout).toContain('created by signet init');
    });

    it('prints the fields the server named when it refuses a body (its errors[])', async () => {
      const refused = await signet([
        'create',
        '--role',
        'auditor',
        '--description',
        'x'.repeat(201),
        '--api-key-file',
        adminKeyFile,
      ]);
      expect(refused.status).toBe(1);
      expect(refused.stderr).toMatch(
        /^signet: 400 \[request\.invalid_body\]: The request body does not match the schema\.\n {2}description: .*200/,
      );
    });
  });

  describe('afterwards', () => {
    it('serves metrics and the docs page too', async () => {
      expect((await call('GET', '/metrics', { key: keys.auditor })).response.status).toBe(200);
      expect((await call('GET', '/docs')).response.status).toBe(200);
      expect((await call('GET', '/docs/rapidoc.js')).response.status).toBe(200);
    });

    it("observes partition signatures and issuance writes in the listener's /metrics", async () => {
      const response = await fetch(`${serving.server.url}/metrics`, {
        headers: { authorization: `Bearer ${keys.auditor}` },
      });
      expect(response.status).toBe(200);
      const text = await response.text();
      expect(text).toMatch(/signet_partition_sign_duration_seconds_count\{purpose="certificate"\} [1-9]/);
      expect(text).toMatch(
        /signet_database_duration_seconds_count\{operation="certificates\.storeIssued"\} [1-9]/,
      );
    });

    it('answers the public endpoints through the app as through the listener', async () => {
      expect((await call('GET', '/openapi.yaml')).response.status).toBe(200);
      expect((await call('GET', '/v1/issuers/dev-intermediate/certificate')).response.status).toBe(200);
      expect((await call('GET', '/v1/issuers/dev-intermediate/chain')).response.status).toBe(200);
      expect((await call('GET', '/crl/dev-intermediate/0.crl')).response.status).toBe(200);
      const request = readFileSync(path.join(dir, 'ocsp-req.der'));
      const post = await call('POST', '/ocsp', {
        raw: new Uint8Array(request),
        headers: { 'content-type': 'application/ocsp-request' },
      });
      const get = await call('GET', `/ocsp/${encodeURIComponent(request.toString('base64'))}`);
      // OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED successful (0), ... } after a long-form length.
      for (const answer of [post, get])
        expect((answer.body as Buffer).subarray(4, 7).toString('hex')).toBe('0a0100');
      expect(get.response.headers.get('content-type')).toBe('application/ocsp-response');
    });

    it('exercised every operation of openapi.yaml, each response matching it', () => {
      const exercised = new Set(
        [...contract.exercised].map((entry) => entry.split(' ').slice(0, 2).join(' ')),
      );
      expect(contract.operations().filter((operation) => !exercised.has(operation))).toEqual([]);
    });

    it('wrote no secret to any log line: no API key, private key, CSR or JWS', () => {
      for (const key of Object.values(keys)) secrets.push(key, key.slice(key.indexOf('_', 4) + 1));
      expect(logs.raw.length).toBeGreaterThan(100);
      const leaks = logs.raw.filter((line) =>
        secrets.some((secret) => secret.length >= 16 && line.includes(secret)),
      );
      expect(leaks).toEqual([]);
      // Every line carries the request id of the request it belongs to.
      expect(logs.lines.filter((line) => line.msg === 'request' && typeof line.reqId !== 'string')).toEqual(
        [],
      );
    });
  });
});
