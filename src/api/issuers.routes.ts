import { Hono } from 'hono';
import type { IssuerRecord } from '../db/issuers.repository.ts';
import { encoding } from '../x509/der.ts';
import { readCertificateFields } from '../x509/issuer.ts';
import { inspectPublicKey } from '../x509/keys.ts';
import { decodeName, formatName } from '../x509/names.ts';
import { PEM_CHAIN, PEM_FILE, PKIX_CERT } from './certificates.routes.ts';
import type { ApiEnv } from './env.ts';
import { apiErrors } from './errors.ts';
import { negotiate, toPem } from './http.ts';
import type { RouteContext } from './routes.ts';
import { ISSUER_ID } from './schemas.ts';

/** What a certificate says about its issuer, read once per certificate (issuers are few). */
const described = new WeakMap<
  Uint8Array,
  { subject: string; notBefore: string; notAfter: string; keyAlgorithm: string }
>();

function describe(der: Uint8Array) {
  let facts = described.get(der);
  if (!facts) {
    const fields = readCertificateFields(der);
    let keyAlgorithm: string;
    try {
      keyAlgorithm = inspectPublicKey(encoding(fields.spki)).name;
    } catch {
      keyAlgorithm = 'unknown';
    }
    facts = {
      subject: formatName(decodeName(fields.subject)),
      notBefore: fields.notBefore.toISOString(),
      notAfter: fields.notAfter.toISOString(),
      keyAlgorithm,
    };
    described.set(der, facts);
  }
  return facts;
}

export const issuerJson = (issuer: IssuerRecord) => ({
  id: issuer.id,
  name: issuer.name,
  parent: issuer.parentId,
  status: issuer.status,
  ...describe(issuer.certificateDer),
  crlUrls: issuer.crlUrls,
  ocspUrls: issuer.ocspUrls,
  caIssuersUrls: issuer.caIssuersUrls,
  certificate: toPem('CERTIFICATE', issuer.certificateDer),
});

// Issuer certificates change only when an issuer is added: relying parties may cache them.
const PUBLIC_CACHE = 'public, max-age=3600';

export function issuersRoutes({ deps, guard }: RouteContext): Hono<ApiEnv> {
  const { issuers } = deps;
  const app = new Hono<ApiEnv>();
  const notFound = (id: string) =>
    apiErrors.notFound(`No issuer with id '${id.slice(0, 64)}'.`, 'issuer.not_found');
  /** An id that is no slug names no issuer; it never reaches the database (issue #19). */
  const findIssuer = async (id: string) => {
    const issuer = ISSUER_ID.test(id) ? await issuers.get(id) : null;
    if (!issuer) throw notFound(id);
    return issuer;
  };

  app.get('/v1/issuers', guard({ action: 'issuer.list', roles: 'authenticated' }), async (c) =>
    c.json({ items: (await issuers.list()).map(issuerJson) }),
  );

  app.get('/v1/issuers/:id', guard({ action: 'issuer.read', roles: 'authenticated' }), async (c) =>
    c.json(issuerJson(await findIssuer(c.req.param('id')))),
  );

  /** Public: the AIA caIssuers target (RFC 5280 §4.2.2.1), DER by default (DESIGN.md). */
  app.get('/v1/issuers/:id/certificate', async (c) => {
    const issuer = await findIssuer(c.req.param('id'));
    c.header('cache-control', PUBLIC_CACHE);
    if (negotiate(c.req.header('accept'), [PKIX_CERT, PEM_FILE]) === PEM_FILE) {
      c.header('content-type', PEM_FILE);
      return c.body(toPem('CERTIFICATE', issuer.certificateDer));
    }
    c.header('content-type', PKIX_CERT);
    return c.body(Buffer.from(issuer.certificateDer));
  });

  /** Public: the issuer up to and including its root, as RFC 8555 §9.1 PEM chain. */
  app.get('/v1/issuers/:id/chain', async (c) => {
    // IssuersRepository.chain throws IssuerNotFoundError for an unknown id: a 404 in onError.
    const id = c.req.param('id');
    if (!ISSUER_ID.test(id)) throw notFound(id);
    const chain = await issuers.chain(id);
    c.header('cache-control', PUBLIC_CACHE);
    c.header('content-type', PEM_CHAIN);
    return c.body(chain.map((issuer) => toPem('CERTIFICATE', issuer.certificateDer)).join(''));
  });

  return app;
}
