import { type Context, Hono } from 'hono';
import type { IssuedCertificate } from '../ca/types.ts';
import type { CertificateListFilter, CertificateSummary } from '../db/certificates.repository.ts';
import { AppError } from '../lib/errors.ts';
import { parseRequestSerial } from '../lib/serial.ts';
import { canonicalIp } from '../x509/names.ts';
import type { San, SanType } from '../x509/types.ts';
import { refuse } from './audit.ts';
import type { ApiEnv, Principal } from './env.ts';
import { apiErrors } from './errors.ts';
import { isJsonType, iso, mediaType, negotiate, readJson, readQuery, toPem } from './http.ts';
import { mayUsePolicy } from './middleware/auth.ts';
import { REPLAYED_HEADER } from './middleware/idempotency.ts';
import { type RouteContext, requesterOf } from './routes.ts';
import { issueBodySchema, listCertificatesQuerySchema, rawIssueQuerySchema } from './schemas.ts';

export const PKCS10 = 'application/pkcs10';
export const PEM_CHAIN = 'application/pem-certificate-chain';
export const PKIX_CERT = 'application/pkix-cert';
export const PEM_FILE = 'application/x-pem-file';

/** What an issuance request asks for, whichever way its body came. */
export interface IssuanceRequest {
  csr: string | Uint8Array;
  policy: string;
  overrides: { sans?: San[]; validity?: string };
}

/**
 * Reads an issuance (or evaluation) request: a JSON body, or a raw PKCS#10 body (RFC 5967
 * application/pkcs10, PEM or DER) with the policy in the query. `policyFromPath` is the name in
 * /v1/policies/{name}/evaluate; a body naming another policy is a 400.
 */
export async function readIssuanceRequest(
  c: Context<ApiEnv>,
  policyFromPath?: string,
): Promise<IssuanceRequest> {
  const type = c.req.header('content-type');
  if (isJsonType(type)) {
    const body = await readJson(
      c,
      policyFromPath === undefined ? issueBodySchema : issueBodySchema.partial({ policy: true }),
    );
    const policy = policyFromPath ?? body.policy;
    if (policy === undefined) throw apiErrors.invalidBody([{ path: 'policy', message: 'required' }]);
    if (policyFromPath !== undefined && body.policy !== undefined && body.policy !== policyFromPath) {
      throw apiErrors.invalidBody([
        { path: 'policy', message: `does not match the policy in the path ('${policyFromPath}')` },
      ]);
    }
    return {
      csr: body.csr,
      policy,
      overrides: {
        ...(body.sans ? { sans: body.sans } : {}),
        ...(body.validity ? { validity: body.validity } : {}),
      },
    };
  }
  if (mediaType(type) === PKCS10) {
    const query =
      policyFromPath === undefined
        ? readQuery(c, rawIssueQuerySchema)
        : readQuery(c, rawIssueQuerySchema.partial({ policy: true }));
    const bytes = new Uint8Array(await c.req.arrayBuffer());
    if (bytes.length === 0)
      throw apiErrors.invalidBody([{ path: '(body)', message: 'the PKCS#10 body is empty' }]);
    // PEM is text starting with a dash; DER starts with a SEQUENCE tag (0x30).
    const csr = bytes[0] === 0x2d ? new TextDecoder().decode(bytes) : bytes;
    const policy = policyFromPath ?? query.policy;
    if (policy === undefined) throw apiErrors.invalidQuery([{ path: 'policy', message: 'required' }]);
    return { csr, policy, overrides: query.validity ? { validity: query.validity } : {} };
  }
  throw apiErrors.unsupportedMediaType(['application/json', PKCS10]);
}

export function issuedJson(issued: IssuedCertificate) {
  return {
    serialNumber: issued.serialNumber,
    certificate: issued.certificatePem,
    chain: issued.chainPem,
    notBefore: issued.notBefore.toISOString(),
    notAfter: issued.notAfter.toISOString(),
    policy: issued.policy,
    issuer: issued.issuer,
  };
}

/** A stored certificate as clients see it; `certificate` (PEM) only when the DER is asked for. */
export function certificateJson(record: CertificateSummary & { der?: Uint8Array | null }, now: Date) {
  return {
    serialNumber: record.serial,
    issuer: record.issuerId,
    policy: record.policy,
    subject: record.subject,
    sans: record.sans,
    notBefore: record.notBefore.toISOString(),
    notAfter: record.notAfter.toISOString(),
    status: publicStatus(record, now),
    requester: record.requester,
    revokedAt: iso(record.revokedAt),
    revocationReason: record.revocationReason,
    invalidityDate: iso(record.invalidityDate),
    ...(record.der ? { certificate: toPem('CERTIFICATE', record.der) } : {}),
  };
}

/** The stored status as users see it: a good certificate past its notAfter is `expired`. */
export function publicStatus(
  record: Pick<CertificateSummary, 'status' | 'notAfter'>,
  now: Date,
): 'valid' | 'revoked' | 'expired' {
  if (record.status === 'revoked') return 'revoked';
  return record.notAfter.getTime() <= now.getTime() ? 'expired' : 'valid';
}

/** Only signed certificates are shown: pending reservations and failed ones are bookkeeping. */
const isShown = (record: Pick<CertificateSummary, 'status'>) =>
  record.status === 'good' || record.status === 'revoked';

/** The API's status filter in terms of the stored status and notAfter. */
function storedFilter(
  status: 'valid' | 'revoked' | 'expired' | undefined,
  expiresBefore: Date | undefined,
  now: Date,
): CertificateListFilter {
  switch (status) {
    case 'revoked':
      return { status: 'revoked', ...(expiresBefore ? { expiresBefore } : {}) };
    case 'valid':
      return { status: 'good', expiresAfter: now, ...(expiresBefore ? { expiresBefore } : {}) };
    case 'expired':
      return { status: 'good', expiresBefore: expiresBefore && expiresBefore < now ? expiresBefore : now };
    default:
      return { status: ['good', 'revoked'], ...(expiresBefore ? { expiresBefore } : {}) };
  }
}

/**
 * `?san=` as the stored SANs hold it (DESIGN.md "SANs in JSON"): `type:NAME` matches that type
 * only, a bare NAME any type. DNS names are stored lower case and IP addresses in canonical text,
 * so both are put in that form first; emails and URIs are matched as written.
 */
export function sanFilter(text: string): { type?: SanType; value: string } {
  const typed = /^(dns|ip|email|uri):(.+)$/i.exec(text);
  const type = typed ? (typed[1]!.toLowerCase() as SanType) : undefined;
  const name = typed ? typed[2]! : text;
  if (type === 'ip' || type === undefined) {
    const ip = canonicalIp(name);
    if (ip !== undefined) return { ...(type ? { type } : {}), value: ip };
    if (type === 'ip')
      throw apiErrors.invalidQuery([{ path: 'san', message: `${name} is not an IP address` }]);
  }
  if (type === 'dns' || (type === undefined && !name.includes('@') && !name.includes(':')))
    return { ...(type ? { type } : {}), value: name.toLowerCase() };
  return { ...(type ? { type } : {}), value: name };
}

/** The issuer role reads only its own certificates; revoker, auditor and admin read all. */
const readsOnlyOwn = (principal: Principal) => !principal.roles.some((role) => role !== 'issuer');

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a route table (hono): one short handler per route, sharing the route context
export function certificatesRoutes({ deps, guard, idempotent, metrics }: RouteContext): Hono<ApiEnv> {
  const { ca, certificates, audit, clock } = deps;
  const app = new Hono<ApiEnv>();

  app.post(
    '/v1/certificates',
    guard({ action: 'certificate.issue', roles: ['issuer'] }),
    idempotent,
    async (c) => {
      const principal = c.get('principal')!;
      const request = await readIssuanceRequest(c);
      if (!mayUsePolicy(principal, request.policy)) {
        return refuse(
          c,
          audit,
          clock,
          'certificate.issue',
          apiErrors.policyNotBound(request.policy),
          `policy:${request.policy}`,
        );
      }
      // Label by known policy names only, so a caller cannot grow the metric's label set.
      const policyLabel = deps.policies.get(request.policy) ? request.policy : 'unknown';
      const idempotency = c.get('idempotency');
      // The first attempt of this idempotent request stored a certificate, then its server died:
      // the retry gets that certificate, not a second one (issue #17).
      let issued = idempotency?.recoveredSerial ? await ca.stored(idempotency.recoveredSerial) : null;
      if (issued) {
        c.header(REPLAYED_HEADER, 'true');
      } else {
        try {
          issued = await ca.issue({
            csr: request.csr,
            policy: request.policy,
            overrides: request.overrides,
            requester: requesterOf(principal),
            ...(idempotency
              ? { idempotency: { credentialId: idempotency.credentialId, key: idempotency.key } }
              : {}),
          });
        } catch (error) {
          metrics.issuances.inc({
            policy: policyLabel,
            outcome: error instanceof AppError && error.category !== 'internal' ? error.code : 'error',
          });
          throw error;
        }
        metrics.issuances.inc({ policy: policyLabel, outcome: 'issued' });
      }
      c.header('location', `/v1/certificates/${issued.serialNumber}`);
      if (negotiate(c.req.header('accept'), ['application/json', PEM_CHAIN]) === PEM_CHAIN) {
        c.header('content-type', PEM_CHAIN);
        return c.body(
          [issued.certificatePem, ...issued.chainPem]
            .map((pem) => (pem.endsWith('\n') ? pem : `${pem}\n`))
            .join(''),
          201,
        );
      }
      return c.json(issuedJson(issued), 201);
    },
  );

  app.get(
    '/v1/certificates',
    guard({ action: 'certificate.list', roles: ['issuer', 'revoker', 'auditor'] }),
    async (c) => {
      const principal = c.get('principal')!;
      const query = readQuery(c, listCertificatesQuerySchema);
      const now = clock.now();
      const page = await certificates.list({
        ...storedFilter(query.status, query.expiresBefore, now),
        ...(query.policy ? { policy: query.policy } : {}),
        ...(query.issuer ? { issuerId: query.issuer } : {}),
        ...(query.san ? { san: sanFilter(query.san) } : {}),
        ...(query.cursor ? { cursor: query.cursor } : {}),
        ...(readsOnlyOwn(principal) ? { requester: principal.id } : {}),
        limit: query.limit,
      });
      return c.json({
        items: page.items.map((record) => certificateJson(record, now)),
        nextCursor: page.nextCursor,
      });
    },
  );

  app.get(
    '/v1/certificates/:serial',
    guard({ action: 'certificate.read', roles: ['issuer', 'revoker', 'auditor'] }),
    async (c) => {
      const principal = c.get('principal')!;
      const serial = parseRequestSerial(c.req.param('serial'));
      const record = await certificates.findBySerial(serial);
      // Another caller's certificate answers as absent, so serials of others are not confirmed.
      if (
        !record?.der ||
        !isShown(record) ||
        (readsOnlyOwn(principal) && record.requester !== principal.id)
      ) {
        throw apiErrors.notFound(`No certificate with serial ${serial}.`, 'certificate.not_found');
      }
      const format = negotiate(c.req.header('accept'), ['application/json', PKIX_CERT, PEM_FILE]);
      if (format === PKIX_CERT) {
        c.header('content-type', PKIX_CERT);
        return c.body(Buffer.from(record.der));
      }
      if (format === PEM_FILE) {
        c.header('content-type', PEM_FILE);
        return c.body(toPem('CERTIFICATE', record.der));
      }
      return c.json(certificateJson(record, clock.now()));
    },
  );

  return app;
}
