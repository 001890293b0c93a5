/**
 * Request authentication of ACME (RFC 8555 §6.2-6.4): every POST body is a JWS in the flattened
 * JSON serialization whose protected header carries `alg`, `nonce`, `url` and exactly one of
 * `jwk` (newAccount, revokeCert by certificate key) or `kid` (an account URL). Signature checks
 * are jose's; the rules of ACME around them are here.
 */
import { base64url, type FlattenedJWSInput, flattenedVerify, type JWK } from 'jose';
import { acmeError } from './errors.ts';

/** RS256 (certbot), ES256 (lego) and ES384. `none` and MAC algorithms never (RFC 8555 §6.2). */
export const ACME_JWS_ALGORITHMS = ['RS256', 'ES256', 'ES384'] as const;
export type AcmeJwsAlgorithm = (typeof ACME_JWS_ALGORITHMS)[number];

const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 8192;

export interface AcmeProtectedHeader {
  alg: AcmeJwsAlgorithm;
  nonce: string;
  url: string;
  jwk?: JWK;
  kid?: string;
}

export interface ParsedJws {
  jws: FlattenedJWSInput;
  header: AcmeProtectedHeader;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

function decodeJson(text: string, what: string): unknown {
  try {
    return JSON.parse(decoder.decode(base64url.decode(text)));
  } catch (error) {
    throw acmeError('malformed', `the JWS ${what} is not base64url-encoded JSON`, { cause: error });
  }
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Reads a request body as a flattened JWS and checks its protected header; the signature is not
 * checked yet (the key may be the account's, found by `kid`).
 */
export function parseJws(body: string, options: { inner?: boolean } = {}): ParsedJws {
  let outer: unknown;
  try {
    outer = JSON.parse(body);
  } catch (error) {
    throw acmeError('malformed', 'the request body is not JSON (RFC 8555 §6.2: a flattened JWS)', {
      cause: error,
    });
  }
  if (!isObject(outer)) throw acmeError('malformed', 'the request body must be a JWS object');
  if ('signatures' in outer) {
    throw acmeError(
      'malformed',
      'use the flattened JWS JSON serialization, not the general one (RFC 8555 §6.2)',
    );
  }
  if ('header' in outer) {
    throw acmeError('malformed', 'the JWS must not have an unprotected header (RFC 8555 §6.2)');
  }
  const { protected: protectedText, payload, signature } = outer;
  if (typeof protectedText !== 'string' || typeof payload !== 'string' || typeof signature !== 'string') {
    throw acmeError('malformed', 'the JWS needs "protected", "payload" and "signature" strings');
  }
  if (!/^[A-Za-z0-9_-]*$/.test(`${protectedText}${payload}${signature}`)) {
    throw acmeError('malformed', 'the JWS parts must be base64url without padding');
  }
  const header = decodeJson(protectedText, 'protected header');
  if (!isObject(header)) throw acmeError('malformed', 'the JWS protected header must be a JSON object');

  const { alg, nonce, url, jwk, kid } = header;
  if (typeof alg !== 'string' || !(ACME_JWS_ALGORITHMS as readonly string[]).includes(alg)) {
    throw acmeError(
      'badSignatureAlgorithm',
      `the JWS algorithm ${JSON.stringify(typeof alg === 'string' ? alg.slice(0, 16) : alg)} is not accepted; use one of ${ACME_JWS_ALGORITHMS.join(', ')}`,
      { algorithms: [...ACME_JWS_ALGORITHMS] },
    );
  }
  if ((jwk === undefined) === (kid === undefined)) {
    throw acmeError(
      'malformed',
      'the JWS protected header must carry exactly one of "jwk" and "kid" (RFC 8555 §6.2)',
    );
  }
  if (jwk !== undefined && !isObject(jwk))
    throw acmeError('malformed', '"jwk" must be a JSON Web Key object');
  if (kid !== undefined && typeof kid !== 'string')
    throw acmeError('malformed', '"kid" must be an account URL');
  if (typeof url !== 'string')
    throw acmeError('malformed', 'the JWS protected header must carry "url" (RFC 8555 §6.4)');
  // RFC 8555 §7.3.5: keyChange's inner JWS has no nonce; it is spent by the outer one.
  if (options.inner) {
    if (nonce !== undefined)
      throw acmeError('malformed', 'the inner JWS must not carry a "nonce" (RFC 8555 §7.3.5)');
  } else if (typeof nonce !== 'string' || nonce.length === 0) {
    // RFC 8555 §6.5: a request without a nonce is refused with badNonce.
    throw acmeError('badNonce', 'the JWS protected header must carry a "nonce" from this server');
  }
  return {
    jws: { protected: protectedText, payload, signature },
    header: {
      alg: alg as AcmeJwsAlgorithm,
      nonce: typeof nonce === 'string' ? nonce : '',
      url,
      ...(jwk !== undefined ? { jwk: jwk as JWK } : {}),
      ...(kid !== undefined ? { kid: kid as string } : {}),
    },
  };
}

/**
 * Checks that a key may be an account key (or a certificate key proving possession): RSA of
 * 2048 to 8192 bits, or EC P-256 or P-384, public only, and fitting `alg`.
 */
export function checkPublicJwk(jwk: JWK, alg: AcmeJwsAlgorithm): JWK {
  if ('d' in jwk || 'p' in jwk || 'k' in jwk) {
    throw acmeError('badPublicKey', 'the JWK carries private or secret key material');
  }
  if (jwk.kty === 'RSA') {
    if (typeof jwk.n !== 'string' || typeof jwk.e !== 'string') {
      throw acmeError('badPublicKey', 'an RSA JWK needs "n" and "e"');
    }
    const bits = rsaBits(jwk.n);
    if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) {
      throw acmeError(
        'badPublicKey',
        `RSA keys of ${MIN_RSA_BITS} to ${MAX_RSA_BITS} bits are accepted; this one has ${bits}`,
      );
    }
    if (alg !== 'RS256')
      throw acmeError('badSignatureAlgorithm', `an RSA key signs with RS256, not ${alg}`, {
        algorithms: ['RS256'],
      });
    return { kty: 'RSA', n: jwk.n, e: jwk.e };
  }
  if (jwk.kty === 'EC') {
    const wanted = jwk.crv === 'P-256' ? 'ES256' : jwk.crv === 'P-384' ? 'ES384' : undefined;
    if (!wanted || typeof jwk.x !== 'string' || typeof jwk.y !== 'string') {
      throw acmeError('badPublicKey', 'EC keys on P-256 or P-384 with "x" and "y" are accepted');
    }
    if (alg !== wanted) {
      throw acmeError('badSignatureAlgorithm', `a ${jwk.crv} key signs with ${wanted}, not ${alg}`, {
        algorithms: [wanted],
      });
    }
    return { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y };
  }
  throw acmeError(
    'badPublicKey',
    `key type ${JSON.stringify(String(jwk.kty).slice(0, 16))} is not accepted; use RSA or EC`,
  );
}

function rsaBits(n: string): number {
  let bytes: Uint8Array;
  try {
    bytes = base64url.decode(n);
  } catch {
    return 0;
  }
  let start = 0;
  while (start < bytes.length && bytes[start] === 0) start++;
  if (start === bytes.length) return 0;
  return (bytes.length - start - 1) * 8 + (32 - Math.clz32(bytes[start]!));
}

/** Verifies the signature with `jwk`; answers the payload bytes (empty for POST-as-GET). */
export async function verifyJws(parsed: ParsedJws, jwk: JWK): Promise<Uint8Array> {
  try {
    const result = await flattenedVerify(parsed.jws, jwk, { algorithms: [parsed.header.alg] });
    return result.payload;
  } catch (error) {
    throw acmeError('malformed', 'the JWS signature does not verify with the account key', { cause: error });
  }
}

/**
 * The payload as JSON: undefined for POST-as-GET (an empty payload, RFC 8555 §6.3), else it must
 * be a JSON object.
 */
export function readPayload(payload: Uint8Array): Record<string, unknown> | undefined {
  if (payload.length === 0) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(payload));
  } catch (error) {
    throw acmeError('malformed', 'the JWS payload is not JSON', { cause: error });
  }
  if (!isObject(value)) throw acmeError('malformed', 'the JWS payload must be a JSON object');
  return value;
}
