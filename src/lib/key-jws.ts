import { createPublicKey, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, compactVerify, decodeProtectedHeader, EmbeddedJWK, type JWK } from 'jose';

/**
 * A compact JWS (RFC 7515 §7.1) signed by the key of a certificate, that key carried in the
 * protected header as `jwk` (RFC 7515 §4.1.3), its payload a JSON object with `iat` (RFC 7519
 * §4.1.6) and `jti`: how revocation by key possession (issue #12) and renewal (issue #32) prove
 * possession of a certified key, as ACME's revokeCert does (RFC 8555 §7.6). This checks the form
 * and the signature; whether the key is the certificate's, the iat window and the jti's first use
 * are the caller's. Each refusal is `refuse('jws_invalid' | 'payload_invalid', message, cause)`,
 * so that each caller answers in its own codes.
 */

/** JWS algorithms accepted (RFC 7518 §3.1, RFC 8037 §3.1; Ed25519 is RFC 9864's fully specified name). */
export const KEY_JWS_ALGORITHMS = ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA', 'Ed25519'] as const;

const MAX_JTI_LENGTH = 256;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$/;

export interface KeyJws {
  alg: string;
  /** The payload's members besides iat and jti are the caller's to read. */
  payload: Record<string, unknown>;
  iat: Date;
  jti: string;
  publicKey: KeyObject;
  /** RFC 7638 SHA-256 thumbprint of the jwk, base64url: a replay scope per key. */
  thumbprint: string;
}

export type KeyJwsRefusal = (
  code: 'jws_invalid' | 'payload_invalid',
  message: string,
  cause?: unknown,
) => Error;

export async function verifyKeyJws(
  jws: unknown,
  { maxLength, refuse }: { maxLength: number; refuse: KeyJwsRefusal },
): Promise<KeyJws> {
  if (typeof jws !== 'string' || jws.length > maxLength || !COMPACT_JWS.test(jws.trim())) {
    throw refuse('jws_invalid', 'the body must be a compact JWS (RFC 7515 §7.1): three base64url parts');
  }
  const compact = jws.trim();
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(compact);
  } catch (error) {
    throw refuse('jws_invalid', 'the JWS protected header is not valid base64url JSON', error);
  }
  if (typeof header.alg !== 'string' || !(KEY_JWS_ALGORITHMS as readonly string[]).includes(header.alg)) {
    throw refuse('jws_invalid', `the JWS alg must be one of ${KEY_JWS_ALGORITHMS.join(', ')}`);
  }
  if (!header.jwk || typeof header.jwk !== 'object') {
    throw refuse('jws_invalid', 'the JWS protected header must carry the certificate public key as "jwk"');
  }
  let payloadBytes: Uint8Array;
  let jwk: JWK;
  try {
    const verified = await compactVerify(compact, EmbeddedJWK, { algorithms: [...KEY_JWS_ALGORITHMS] });
    payloadBytes = verified.payload;
    jwk = verified.protectedHeader.jwk as JWK;
  } catch (error) {
    throw refuse('jws_invalid', 'the JWS signature does not verify with the key in its "jwk" header', error);
  }
  let payload: unknown;
  try {
    payload = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payloadBytes));
  } catch (error) {
    throw refuse('payload_invalid', 'the JWS payload must be a JSON object', error);
  }
  if (!payload || typeof payload !== 'object' || Array.isArray(payload)) {
    throw refuse('payload_invalid', 'the JWS payload must be a JSON object');
  }
  const { iat, jti } = payload as Record<string, unknown>;
  if (typeof iat !== 'number' || !Number.isSafeInteger(iat)) {
    throw refuse(
      'payload_invalid',
      'the payload must carry "iat", seconds since the epoch (RFC 7519 §4.1.6)',
    );
  }
  if (
    typeof jti !== 'string' ||
    jti.length === 0 ||
    jti.length > MAX_JTI_LENGTH ||
    !/^[\x21-\x7e]+$/.test(jti)
  ) {
    throw refuse(
      'payload_invalid',
      `the payload must carry "jti", 1 to ${MAX_JTI_LENGTH} printable ASCII characters`,
    );
  }
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: jwk, format: 'jwk' } as never);
  } catch (error) {
    throw refuse('jws_invalid', 'the JWS "jwk" is not a usable public key', error);
  }
  return {
    alg: header.alg,
    payload: payload as Record<string, unknown>,
    iat: new Date(iat * 1000),
    jti,
    publicKey,
    thumbprint: await calculateJwkThumbprint(jwk, 'sha256'),
  };
}
