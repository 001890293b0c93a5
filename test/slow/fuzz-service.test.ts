import { execFileSync } from 'node:child_process';
import { createPrivateKey, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CompactSign, exportJWK, FlattenedSign, generateKeyPair, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { OPENAPI_PATH } from '../../src/api/health.routes.ts';
import { hasTool } from '../helpers/tools.ts';
import { type FuzzRequest, fuzzHttp, type HttpTarget, problemCheck } from './fuzz/http-fuzz.ts';
import {
  budget,
  mutateBytes,
  mutateJson,
  mutateJsonText,
  printTally,
  type Rng,
  runSeed,
} from './fuzz/mutator.ts';
import { type FuzzService, opensslCsr, startFuzzService } from './fuzz/service.ts';

/**
 * Issue #34: about 15,000 mutated inputs against a running CA (`signet serve` in its own
 * process, the partition process beside it): the CSR parser (raw and in JSON), the OCSP request
 * parser (POST and GET), the CRL parser of the import route, the JSON and JWS bodies of every
 * endpoint that takes one (from openapi.yaml's examples and from real requests), and ACME's JWS
 * bodies, signed anew with a fresh nonce so that they reach the checks behind the signature.
 * Every answer comes within 20 s, none is a 5xx, REST errors are problem documents, and the CA
 * and its partition are the same processes at the end, still issuing.
 */
const haveOpenssl = hasTool('openssl', ['version']);
const SEED = runSeed();
const enc = new TextEncoder();

let svc: FuzzService;
let csrDer: Buffer;
let rsaCsrDer: Buffer;
let leaf: { serial: string; pem: string; keyFile: string };
let ocspSeeds: Uint8Array[];
let crlDer: Uint8Array;
let childrenAtStart: number[];

const admin = () => ({ authorization: `Bearer ${svc.adminKey}` });

async function issue(der: Buffer): Promise<{ serialNumber: string; certificate: string }> {
  const response = await fetch(`${svc.url}/v1/certificates?policy=web-server`, {
    method: 'POST',
    headers: { ...admin(), 'content-type': 'application/pkcs10' },
    body: der,
  });
  expect(response.status).toBe(201);
  return (await response.json()) as { serialNumber: string; certificate: string };
}

function ocspRequest(dir: string, args: string[], name: string): Uint8Array {
  const out = path.join(dir, `${name}.der`);
  execFileSync('openssl', ['ocsp', '-issuer', path.join(dir, 'int.pem'), ...args, '-reqout', out], {
    stdio: 'ignore',
  });
  return new Uint8Array(readFileSync(out));
}

describe.runIf(haveOpenssl || process.env.CI)('a running CA under mutated input', () => {
  beforeAll(async () => {
    if (!haveOpenssl) throw new Error('openssl is required in CI');
    svc = await startFuzzService('service');
    const ec = opensslCsr(svc.dir, 'fuzz');
    csrDer = ec.der;
    rsaCsrDer = opensslCsr(svc.dir, 'fuzz-rsa', ['-newkey', 'rsa:2048']).der;
    const issued = await issue(csrDer);
    leaf = { serial: issued.serialNumber, pem: issued.certificate, keyFile: ec.keyFile };
    writeFileSync(path.join(svc.dir, 'leaf.pem'), leaf.pem);
    const intermediate = await fetch(`${svc.url}/v1/issuers/dev-intermediate/certificate`, {
      headers: { accept: 'application/x-pem-file' },
    });
    writeFileSync(path.join(svc.dir, 'int.pem'), await intermediate.text());
    const leafFile = path.join(svc.dir, 'leaf.pem');
    ocspSeeds = [
      ocspRequest(svc.dir, ['-cert', leafFile, '-no_nonce'], 'plain'),
      ocspRequest(svc.dir, ['-cert', leafFile], 'nonce'),
      ocspRequest(svc.dir, ['-sha256', '-cert', leafFile, '-cert', leafFile], 'two'),
    ];
    crlDer = new Uint8Array(await (await fetch(`${svc.url}/crl/dev-intermediate.crl`)).arrayBuffer());
    childrenAtStart = svc.children();
  }, 180_000);

  afterAll(async () => {
    printTally('fuzz-service');
    await svc?.stop();
  });

  const run = async (target: HttpTarget, count: number) => {
    const failures = await fuzzHttp(svc.url, target, { count: budget(count), seed: SEED });
    expect(failures, `seed ${SEED}; server stderr:\n${svc.stderr().slice(-3000)}`).toEqual([]);
    expect(svc.process.exitCode, 'the CA process is alive').toBeNull();
  };

  it('answers mutated CSRs, DER and PEM, with a csr.* or request.* problem', async () => {
    const seeds = [csrDer, rsaCsrDer];
    const pem = (der: Uint8Array) =>
      enc.encode(
        `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from(der).toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`,
      );
    const raw = (body: Uint8Array): FuzzRequest => ({
      method: 'POST',
      path: '/v1/certificates?policy=web-server',
      contentType: 'application/pkcs10',
      headers: admin(),
      body,
    });
    await run(
      {
        name: 'csr-der',
        make: (rng) => raw(mutateBytes(rng, rng.pick(seeds), seeds)),
        replay: raw,
        check: problemCheck,
      },
      3_000,
    );
    await run(
      {
        name: 'csr-pem',
        make: (rng) =>
          raw(rng.int(2) ? pem(mutateBytes(rng, rng.pick(seeds))) : mutateBytes(rng, pem(rng.pick(seeds)))),
        replay: raw,
        check: problemCheck,
      },
      1_000,
    );
  }, 600_000);

  it('answers mutated OCSP requests, POST and GET, with a DER OCSP response', async () => {
    const ocspCheck = (status: number, contentType: string) =>
      status === 200 && contentType !== 'application/ocsp-response'
        ? `a 200 answered as ${contentType}`
        : undefined;
    const post = (body: Uint8Array): FuzzRequest => ({
      method: 'POST',
      path: '/ocsp',
      contentType: 'application/ocsp-request',
      body,
    });
    await run(
      {
        name: 'ocsp-post',
        make: (rng) => post(mutateBytes(rng, rng.pick(ocspSeeds), ocspSeeds)),
        replay: post,
        check: ocspCheck,
      },
      3_000,
    );
    // RFC 6960 §A.1: GET /ocsp/{url-encoded base64}; mutate the DER or the path text itself.
    const get = (body: Uint8Array): FuzzRequest => ({
      method: 'GET',
      path: `/ocsp/${Buffer.from(body).toString('latin1')}`,
      kept: body,
    });
    const encode = (der: Uint8Array) => encodeURIComponent(Buffer.from(der).toString('base64'));
    await run(
      {
        name: 'ocsp-get',
        make: (rng) => {
          const text = rng.int(2)
            ? encode(mutateBytes(rng, rng.pick(ocspSeeds)))
            : Buffer.from(mutateBytes(rng, enc.encode(encode(rng.pick(ocspSeeds))))).toString('latin1');
          // A path holds no raw space, '?' or '#' (they would end it): percent-encode those.
          const path = Array.from(text, (c) => {
            const code = c.charCodeAt(0);
            const unsafe = code <= 0x20 || code >= 0x7f || c === '?' || c === '#';
            return unsafe ? `%${code.toString(16).padStart(2, '0')}` : c;
          }).join('');
          return get(enc.encode(path));
        },
        replay: get,
        check: ocspCheck,
      },
      1_000,
    );
  }, 600_000);

  it('answers mutated CRLs at the import route with a crl.* problem', async () => {
    const post = (body: Uint8Array): FuzzRequest => ({
      method: 'POST',
      path: '/v1/issuers/dev-root/crl',
      contentType: 'application/pkix-crl',
      headers: admin(),
      body,
    });
    await run(
      {
        name: 'crl-import',
        make: (rng) => post(mutateBytes(rng, crlDer, [crlDer])),
        replay: post,
        check: problemCheck,
      },
      1_500,
    );
  }, 600_000);

  it('answers mutated JSON and JWS bodies of every REST endpoint that takes one with a problem', async () => {
    const key = createPrivateKey(readFileSync(leaf.keyFile));
    const jwk = (await exportJWK(key)) as JWK;
    const { d: _private, ...publicJwk } = jwk;
    const signLeaf = (payload: unknown) =>
      new CompactSign(enc.encode(JSON.stringify(payload)))
        .setProtectedHeader({ alg: 'ES256', jwk: publicJwk })
        .sign(key);
    const now = () => Math.floor(Date.now() / 1000);
    const byKey = () => ({ serial: leaf.serial, reason: 'superseded', iat: now(), jti: randomUUID() });
    const renew = () => ({ serial: leaf.serial, iat: now(), jti: randomUUID() });
    const sites = requestBodySites();
    expect(sites.length, 'request bodies listed in openapi.yaml').toBeGreaterThanOrEqual(8);
    for (const site of sites) {
      const path = site.path
        .replace('{serial}', leaf.serial)
        .replace('{name}', 'web-server')
        .replace('{id}', 'dev-intermediate');
      const request = (body: Uint8Array): FuzzRequest => ({
        method: 'POST',
        path,
        contentType: site.mediaType,
        headers: admin(),
        body,
      });
      const jwsPayload = site.path.endsWith('/renew')
        ? renew
        : site.path.endsWith('/by-key')
          ? byKey
          : undefined;
      const make = async (rng: Rng): Promise<FuzzRequest> => {
        // A real JWS over a mutated payload reaches the checks behind the signature.
        if (jwsPayload && rng.int(2) === 0) {
          const jws = await signLeaf(mutateJson(rng, jwsPayload()));
          return request(enc.encode(site.mediaType === 'application/jose' ? jws : JSON.stringify({ jws })));
        }
        const seed = rng.pick(site.examples);
        if (typeof seed === 'string') return request(mutateBytes(rng, enc.encode(seed)));
        return request(enc.encode(mutateJsonText(rng, seed)));
      };
      await run(
        {
          name: `body-${site.operationId}-${site.mediaType.replace('/', '-')}`,
          make,
          replay: request,
          check: problemCheck,
        },
        400,
      );
    }
  }, 900_000);

  it('answers mutated ACME requests with an ACME problem, signed anew so they pass the JWS checks', async () => {
    const base = `${svc.url}/acme/dev`;
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = await exportJWK(publicKey);
    const nonce = async () => (await fetch(`${base}/new-nonce`)).headers.get('replay-nonce') ?? '';
    const sign = async (url: string, payload: unknown, header: Record<string, unknown>) =>
      JSON.stringify(
        await new FlattenedSign(enc.encode(payload === '' ? '' : JSON.stringify(payload)))
          .setProtectedHeader({ alg: 'ES256', nonce: await nonce(), url, ...header } as never)
          .sign(privateKey),
      );
    const created = await fetch(`${base}/new-account`, {
      method: 'POST',
      headers: { 'content-type': 'application/jose+json' },
      body: await sign(
        `${base}/new-account`,
        { termsOfServiceAgreed: true, contact: ['mailto:fuzz@example.com'] },
        { jwk },
      ),
    });
    expect(created.status).toBe(201);
    const kid = created.headers.get('location') ?? '';
    const acmeCheck = (status: number, contentType: string) =>
      status >= 400 && !contentType.startsWith('application/problem+json')
        ? `a ${status} answered as ${contentType}`
        : undefined;
    const resources = [
      {
        name: 'new-account',
        payload: { termsOfServiceAgreed: true, contact: ['mailto:fuzz@example.com'] },
        header: { jwk },
      },
      {
        name: 'new-order',
        payload: { identifiers: [{ type: 'dns', value: 'www.example.com' }] },
        header: { kid },
      },
      {
        name: 'revoke-cert',
        payload: {
          certificate: Buffer.from(leaf.pem.replace(/-----[^-]+-----|\s/g, ''), 'base64').toString(
            'base64url',
          ),
          reason: 4,
        },
        header: { kid },
      },
      { name: 'key-change', payload: { account: kid, oldKey: jwk }, header: { kid } },
    ];
    for (const resource of resources) {
      const url = `${base}/${resource.name}`;
      const seedBody = await sign(url, resource.payload, resource.header);
      const request = (body: Uint8Array): FuzzRequest => ({
        method: 'POST',
        path: `/acme/dev/${resource.name}`,
        contentType: 'application/jose+json',
        body,
      });
      const make = async (rng: Rng): Promise<FuzzRequest> => {
        switch (rng.int(3)) {
          case 0: // a valid signature over a mutated payload, fresh nonce
            return request(enc.encode(await sign(url, mutateJson(rng, resource.payload), resource.header)));
          case 1: // a valid signature over a mutated protected header
            return request(
              enc.encode(
                await sign(
                  url,
                  resource.payload,
                  mutateJson(rng, resource.header) as Record<string, unknown>,
                ),
              ),
            );
          default: // the JWS itself mutated (its nonce is spent: the checks before the nonce's)
            return request(
              rng.int(2)
                ? mutateBytes(rng, enc.encode(seedBody))
                : enc.encode(mutateJsonText(rng, JSON.parse(seedBody))),
            );
        }
      };
      await run({ name: `acme-${resource.name}`, make, replay: request, check: acmeCheck }, 500);
    }
  }, 900_000);

  it('is the same CA and partition processes afterwards, ready and issuing', async () => {
    expect(svc.process.exitCode).toBeNull();
    expect(svc.children(), 'the partition process was never restarted').toEqual(childrenAtStart);
    expect((await fetch(`${svc.url}/readyz`)).status).toBe(200);
    const issued = await issue(csrDer);
    expect(issued.serialNumber).toMatch(/^[0-9a-f]+$/);
    const log = svc.stderr();
    expect(log, 'no uncaught error in the log').not.toMatch(/uncaught|unhandled|FATAL/i);
  }, 60_000);
});

interface BodySite {
  path: string;
  operationId: string;
  mediaType: string;
  examples: unknown[];
}

/** Every POST request body of openapi.yaml with its examples (JSON values, or text for JWS/PEM). */
function requestBodySites(): BodySite[] {
  const document = parseYaml(readFileSync(OPENAPI_PATH, 'utf8')) as {
    paths: Record<
      string,
      Record<
        string,
        {
          operationId: string;
          requestBody?: {
            content: Record<string, { examples?: Record<string, { $ref?: string; value?: unknown }> }>;
          };
        }
      >
    >;
    components: { examples: Record<string, { value: unknown }> };
  };
  const sites: BodySite[] = [];
  for (const [path, item] of Object.entries(document.paths)) {
    const operation = item.post;
    if (!operation?.requestBody) continue;
    for (const [mediaType, media] of Object.entries(operation.requestBody.content)) {
      // Raw DER bodies (CSR, CRL, OCSP) have their own byte-level targets above.
      if (!/json|jose/.test(mediaType)) continue;
      const examples = Object.values(media.examples ?? {}).map((example) =>
        example.$ref
          ? document.components.examples[example.$ref.split('/').pop() as string]?.value
          : example.value,
      );
      if (examples.length) sites.push({ path, operationId: operation.operationId, mediaType, examples });
    }
  }
  return sites;
}
