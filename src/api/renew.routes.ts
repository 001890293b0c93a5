import type { TLSSocket } from 'node:tls';
import { type Context, Hono } from 'hono';
import type { Renewed } from '../ca/renew.usecase.ts';
import { AppError } from '../lib/errors.ts';
import { issuedJson, PEM_CHAIN } from './certificates.routes.ts';
import { addressKey, clientAddress } from './client-address.ts';
import type { ApiEnv } from './env.ts';
import { apiErrors } from './errors.ts';
import { isJsonType, mediaType, negotiate, readJson } from './http.ts';
import { checkAttempts, failedAttempt } from './middleware/auth.ts';
import type { RouteContext } from './routes.ts';
import { renewBodySchema } from './schemas.ts';

/** The DER certificate the client proved in the TLS handshake, whether or not Node trusted it. */
function clientCertificateOf(c: Context<ApiEnv>): Uint8Array | undefined {
  const socket = (c.env as { incoming?: { socket?: TLSSocket } } | undefined)?.incoming?.socket;
  if (!socket || typeof socket.getPeerX509Certificate !== 'function') return undefined;
  const peer = socket.getPeerX509Certificate();
  return peer ? new Uint8Array(peer.raw) : undefined;
}

/**
 * POST /v1/certificates/{serial}/renew (issue #32): public, the certificate's key is the
 * credential (src/ca/renew.usecase.ts). A JWS signed by that key as the body
 * (application/jose, or JSON `{ "jws" }`), or, on a TLS listener, the certificate itself as the
 * TLS client certificate with an optional JSON `{ "csr" }` to re-key. A refused proof counts
 * against the client address's failed-authentication budget, as revocation by key does.
 */
export function renewRoutes({ deps, attempts, failedAuth }: RouteContext): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();

  app.post('/v1/certificates/:serial/renew', async (c) => {
    const client = addressKey(clientAddress(c));
    await checkAttempts(attempts, client);
    const serial = c.req.param('serial');
    try {
      const type = c.req.header('content-type');
      let jws: string | undefined;
      let csr: string | undefined;
      if (mediaType(type) === 'application/jose') jws = (await c.req.text()).trim();
      else if (isJsonType(type)) ({ jws, csr } = await readJson(c, renewBodySchema));
      else if (type !== undefined && (await c.req.arrayBuffer()).byteLength > 0)
        throw apiErrors.unsupportedMediaType(['application/jose', 'application/json']);
      if (jws !== undefined && csr !== undefined) {
        throw apiErrors.invalidBody([
          { path: 'csr', message: 'with a JWS, the CSR goes in its signed payload, not beside it' },
        ]);
      }
      // After reading the request: a malformed one is the client's mistake on any server.
      const renewal = deps.renewal;
      if (!renewal) {
        throw new AppError('renew.unavailable', 'unavailable', 'Renewal is not available on this server.');
      }
      let result: Renewed;
      if (jws !== undefined) {
        result = await renewal.withJws(serial, jws);
      } else {
        const certificate = clientCertificateOf(c);
        if (!certificate) {
          throw new AppError(
            'renew.credential_missing',
            'unauthenticated',
            'Prove possession of the certificate key: send a JWS signed by it, or present the certificate as the TLS client certificate.',
          );
        }
        result = await renewal.withClientCertificate(serial, certificate, csr);
      }
      c.header('location', `/v1/certificates/${result.issued.serialNumber}`);
      if (negotiate(c.req.header('accept'), ['application/json', PEM_CHAIN]) === PEM_CHAIN) {
        c.header('content-type', PEM_CHAIN);
        return c.body(
          [result.issued.certificatePem, ...result.issued.chainPem]
            .map((pem) => (pem.endsWith('\n') ? pem : `${pem}\n`))
            .join(''),
          201,
        );
      }
      return c.json(issuedJson(result.issued), 201);
    } catch (error) {
      if (
        error instanceof AppError &&
        /^renew\.(jws_invalid|key_mismatch|client_certificate_invalid|credential_missing)$/.test(error.code)
      ) {
        const instead = await failedAttempt(
          c,
          { attempts, failedAuth },
          { client, action: 'certificate.renew', code: error.code },
        );
        if (instead) throw instead;
      }
      throw error;
    }
  });

  return app;
}
