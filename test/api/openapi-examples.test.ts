import { X509Certificate } from 'node:crypto';
import { compactVerify, decodeProtectedHeader, importJWK, type JWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { parseCsr } from '../../src/x509/csr.ts';
import { Contract } from './helpers/contract.ts';

/**
 * Issue #33: openapi.yaml had no examples, so the docs page's sample sent `"csr": ""`. Every
 * request body and the main responses carry an example now; each is held here to its schema,
 * and the PKI in them to itself: the CSR is one, signed; the certificate answers it; the JWS
 * that revokes it verifies with that certificate's key.
 */
type Json = Record<string, unknown>;
const contract = new Contract();
const esc = (s: string) => s.replaceAll('~', '~0').replaceAll('/', '~1');
const METHODS = ['get', 'put', 'post', 'delete', 'patch'];
/** Bodies that are DER and nothing else have no text to show; their descriptions say how to make one. */
const DER_ONLY = new Set(['application/pkix-crl', 'application/ocsp-request']);

interface Site {
  where: string;
  mediaType: string;
  schemaPointer: string;
  examples: { name: string; value: unknown; ref?: string }[];
}

function examplesOf(media: Json): Site['examples'] {
  const found: Site['examples'] = [];
  if ('example' in media) found.push({ name: 'example', value: media.example });
  for (const [name, example] of Object.entries((media.examples ?? {}) as Record<string, Json>)) {
    const ref = typeof example.$ref === 'string' ? example.$ref : undefined;
    const resolved = ref ? contract.node(ref.slice(1)) : example;
    found.push({ name, value: resolved.value, ...(ref ? { ref } : {}) });
  }
  return found;
}

/** Every media type of every request body and response, with the pointer of its schema. */
function sites(): { requests: Site[]; responses: (Site & { status: string })[]; shared: Site[] } {
  const requests: Site[] = [];
  const responses: (Site & { status: string })[] = [];
  for (const [path, item] of Object.entries(contract.paths)) {
    for (const method of METHODS.filter((m) => m in item)) {
      const operation = item[method] as Json;
      const base = `/paths/${esc(path)}/${method}`;
      const body = operation.requestBody as { content?: Record<string, Json> } | undefined;
      for (const [type, media] of Object.entries(body?.content ?? {})) {
        requests.push({
          where: `${method.toUpperCase()} ${path} request`,
          mediaType: type,
          schemaPointer: `${base}/requestBody/content/${esc(type)}/schema`,
          examples: examplesOf(media),
        });
      }
      for (const [status, response] of Object.entries(operation.responses as Record<string, Json>)) {
        if (typeof response.$ref === 'string') continue; // shared: checked once below
        for (const [type, media] of Object.entries((response.content ?? {}) as Record<string, Json>)) {
          responses.push({
            where: `${method.toUpperCase()} ${path} ${status}`,
            status,
            mediaType: type,
            schemaPointer: `${base}/responses/${esc(status)}/content/${esc(type)}/schema`,
            examples: examplesOf(media),
          });
        }
      }
    }
  }
  const shared: Site[] = [];
  const components = contract.document.components as { responses: Record<string, Json> };
  for (const [name, response] of Object.entries(components.responses)) {
    for (const [type, media] of Object.entries((response.content ?? {}) as Record<string, Json>)) {
      shared.push({
        where: `components.responses.${name}`,
        mediaType: type,
        schemaPointer: `/components/responses/${name}/content/${esc(type)}/schema`,
        examples: examplesOf(media),
      });
    }
  }
  return { requests, responses, shared };
}

const all = sites();
const example = (name: string) => contract.node(`/components/examples/${name}`).value as never;

describe('the examples in openapi.yaml', () => {
  it('show every request body that is text', () => {
    const missing = all.requests
      .filter((site) => !DER_ONLY.has(site.mediaType) && site.examples.length === 0)
      .map((site) => `${site.where} ${site.mediaType}`);
    expect(missing).toEqual([]);
  });

  it('show every successful JSON or PEM answer, and the main problems', () => {
    const missing = all.responses
      .filter(
        (site) =>
          site.status.startsWith('2') &&
          (site.mediaType === 'application/json' || site.mediaType === 'application/pem-certificate-chain') &&
          site.examples.length === 0,
      )
      .map((site) => `${site.where} ${site.mediaType}`);
    expect(missing).toEqual([]);
    const problems = all.shared.filter((site) => site.examples.length > 0).map((site) => site.where);
    expect(problems).toEqual(
      expect.arrayContaining(
        ['BadRequest', 'Unauthorized', 'Forbidden', 'NotFound'].map((n) => `components.responses.${n}`),
      ),
    );
  });

  it.each(
    [...all.requests, ...all.responses, ...all.shared].flatMap((site) =>
      site.examples.map((e) => [`${site.where} ${site.mediaType} (${e.name})`, site, e.value] as const),
    ),
  )('%s is valid against its schema', (_name, site, value) => {
    expect(contract.validate(site.schemaPointer, value)).toEqual([]);
  });

  it('are each used, and none is empty', () => {
    const used = new Set(
      [...all.requests, ...all.responses, ...all.shared].flatMap((site) => site.examples.map((e) => e.ref)),
    );
    const defined = Object.keys((contract.document.components as { examples: Json }).examples);
    expect(defined.filter((name) => !used.has(`#/components/examples/${name}`))).toEqual([]);
    for (const name of defined) expect(example(name), name).toBeTruthy();
  });
});

describe('the PKI in the examples', () => {
  it('is a signed CSR for www.example.com, the same in every request that carries one', () => {
    const pem = example('CsrPem') as string;
    const csr = parseCsr(pem);
    expect(csr.sans).toEqual([
      { type: 'dns', value: 'www.example.com' },
      { type: 'dns', value: 'example.com' },
    ]);
    expect((example('IssueRequest') as { csr: string }).csr).toBe(pem);
    expect((example('EvaluateRequest') as { csr: string }).csr).toBe(pem);
  });

  it('answers that CSR with a certificate for its key, under the intermediate its chain names', () => {
    const issued = example('IssuedCertificate') as {
      serialNumber: string;
      certificate: string;
      chain: string[];
    };
    const leaf = new X509Certificate(issued.certificate);
    const intermediate = new X509Certificate(issued.chain[0]!);
    expect(leaf.checkIssued(intermediate)).toBe(true);
    expect(leaf.verify(intermediate.publicKey)).toBe(true);
    expect(leaf.serialNumber.toLowerCase()).toBe(issued.serialNumber.replace(/^00/, ''));
    expect(leaf.subjectAltName).toBe('DNS:www.example.com, DNS:example.com');
    const spki = leaf.publicKey.export({ type: 'spki', format: 'der' });
    expect(Buffer.from(spki)).toEqual(Buffer.from(parseCsr(example('CsrPem') as string).publicKey));
    expect(example('IssuedChain')).toBe(issued.certificate + issued.chain.join(''));
    expect((example('Certificate') as { certificate: string }).certificate).toBe(issued.certificate);
    // The issuer's chain runs from that intermediate to the root, which signed it.
    const [chainIntermediate, root] = (example('IssuerChain') as string).match(
      /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n/g,
    )!;
    expect(chainIntermediate).toBe(issued.chain[0]);
    expect(intermediate.verify(new X509Certificate(root!).publicKey)).toBe(true);
  });

  it('revokes it by a JWS that verifies with the certificate key, for the certificate the revocation names', async () => {
    const jws = example('RevokeByKeyJws') as string;
    expect((example('RevokeByKeyJson') as { jws: string }).jws).toBe(jws);
    const { jwk } = decodeProtectedHeader(jws) as { jwk: JWK };
    const { payload } = await compactVerify(jws, await importJWK(jwk, 'ES256'));
    const claims = JSON.parse(Buffer.from(payload).toString('utf8'));
    const issued = example('IssuedCertificate') as { serialNumber: string; certificate: string };
    expect(claims.serial).toBe(issued.serialNumber);
    const leafJwk = new X509Certificate(issued.certificate).publicKey.export({ format: 'jwk' });
    expect([jwk.x, jwk.y]).toEqual([leafJwk.x, leafJwk.y]);
    expect((example('Revocation') as { serialNumber: string }).serialNumber).toBe(issued.serialNumber);
  });
});

describe('the renewal examples', () => {
  it('sign the serial of the example certificate with the key in their header, and re-key with a CSR for its names', async () => {
    const jws = example('RenewJws') as string;
    expect((example('RenewJson') as { jws: string }).jws).toBe(jws);
    const { jwk, alg } = decodeProtectedHeader(jws) as { jwk: JWK; alg: string };
    expect(alg).toBe('ES256');
    const { payload } = await compactVerify(jws, await importJWK(jwk, 'ES256'));
    const claims = JSON.parse(Buffer.from(payload).toString('utf8'));
    expect(Object.keys(claims).sort()).toEqual(['iat', 'jti', 'serial']);
    expect(claims.serial).toBe((example('IssuedCertificate') as { serialNumber: string }).serialNumber);
    const rekey = parseCsr((example('RenewRekeyMtls') as { csr: string }).csr);
    expect(rekey.sans).toEqual(parseCsr(example('CsrPem') as string).sans);
    expect(Buffer.from(rekey.publicKey)).not.toEqual(
      Buffer.from(parseCsr(example('CsrPem') as string).publicKey),
    );
  });
});
