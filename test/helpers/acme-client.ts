/**
 * A small hand-made ACME client (RFC 8555) for the protocol tests, the IP-identifier test and
 * bench/acme: every request is a flattened JWS built here with node:crypto, so a test can bend any
 * part of it (the nonce, the url, both jwk and kid, the algorithm) and see the server's answer.
 */
import { createHash, createHmac, generateKeyPairSync, type KeyObject, sign as nodeSign } from 'node:crypto';
import { base64url, calculateJwkThumbprint, type JWK } from 'jose';

export type Fetch = (url: string, init: RequestInit) => Promise<Response>;

export interface AcmeAnswer {
  response: Response;
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: ACME documents are read field by field by the tests
  body: any;
  nonce: string | null;
}

export interface SignOptions {
  /** Sign with `jwk` instead of the account's `kid`. */
  useJwk?: boolean;
  /** Put both jwk and kid in the header. */
  both?: boolean;
  nonce?: string;
  /** The `url` header, when it should differ from the URL posted to. */
  signedUrl?: string;
  /** Another key pair (revokeCert by certificate key). */
  key?: AcmeKey;
  /** Extra protected header members, or `alg` to lie about. */
  header?: Record<string, unknown>;
}

export interface AcmeKey {
  privateKey: KeyObject;
  jwk: JWK;
  alg: 'ES256' | 'ES384' | 'RS256';
}

export function newAcmeKey(kind: 'ec-p256' | 'ec-p384' | 'rsa-2048' = 'ec-p256'): AcmeKey {
  const pair =
    kind === 'rsa-2048'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: kind === 'ec-p256' ? 'P-256' : 'P-384' });
  const jwk = pair.publicKey.export({ format: 'jwk' }) as JWK;
  return {
    privateKey: pair.privateKey,
    jwk,
    alg: kind === 'rsa-2048' ? 'RS256' : kind === 'ec-p256' ? 'ES256' : 'ES384',
  };
}

export class AcmeClient {
  directory: Record<string, string> = {};
  nonce: string | null = null;
  kid: string | undefined;
  thumbprint = '';

  constructor(
    readonly fetch: Fetch,
    readonly directoryUrl: string,
    readonly key: AcmeKey = newAcmeKey(),
  ) {}

  async init(): Promise<this> {
    const response = await this.fetch(this.directoryUrl, { method: 'GET' });
    if (response.status !== 200) throw new Error(`directory answered ${response.status}`);
    this.directory = (await response.json()) as Record<string, string>;
    this.nonce = response.headers.get('replay-nonce');
    this.thumbprint = await calculateJwkThumbprint(this.key.jwk, 'sha256');
    return this;
  }

  async freshNonce(): Promise<string> {
    const response = await this.fetch(this.directory.newNonce!, { method: 'HEAD' });
    const nonce = response.headers.get('replay-nonce');
    if (!nonce) throw new Error('newNonce gave no nonce');
    return nonce;
  }

  /** A signed request body (flattened JWS); payload '' is POST-as-GET. */
  async sign(url: string, payload: unknown, options: SignOptions = {}): Promise<string> {
    const key = options.key ?? this.key;
    const nonce = options.nonce ?? this.nonce ?? (await this.freshNonce());
    this.nonce = null;
    const header: Record<string, unknown> = { alg: key.alg, nonce, url: options.signedUrl ?? url };
    if (options.useJwk || options.key || options.both || !this.kid) header.jwk = key.jwk;
    if ((!options.useJwk && !options.key && this.kid) || options.both) header.kid = this.kid;
    Object.assign(header, options.header);
    return JSON.stringify(
      flattenedJws(key, header, payload === '' ? '' : base64url.encode(JSON.stringify(payload))),
    );
  }

  async postRaw(url: string, body: string, contentType = 'application/jose+json'): Promise<AcmeAnswer> {
    const response = await this.fetch(url, {
      method: 'POST',
      headers: { 'content-type': contentType },
      body,
    });
    this.nonce = response.headers.get('replay-nonce');
    const text = await response.text();
    const type = response.headers.get('content-type') ?? '';
    const parsed = /json/.test(type) && text ? JSON.parse(text) : text;
    return { response, status: response.status, body: parsed, nonce: this.nonce };
  }

  async post(url: string, payload: unknown, options: SignOptions = {}): Promise<AcmeAnswer> {
    return this.postRaw(url, await this.sign(url, payload, options));
  }

  async newAccount(payload: Record<string, unknown> = { termsOfServiceAgreed: true }): Promise<AcmeAnswer> {
    const answer = await this.post(this.directory.newAccount!, payload, { useJwk: true });
    if (answer.status === 200 || answer.status === 201)
      this.kid = answer.response.headers.get('location') ?? undefined;
    return answer;
  }

  newOrder(identifiers: { type: string; value: string }[]): Promise<AcmeAnswer> {
    return this.post(this.directory.newOrder!, { identifiers });
  }

  keyAuthorization(token: string): string {
    return `${token}.${this.thumbprint}`;
  }

  /** The TXT value of dns-01 (RFC 8555 §8.4). */
  dnsValue(token: string): string {
    return createHash('sha256').update(this.keyAuthorization(token)).digest('base64url');
  }

  /** POST-as-GET until `done(body)` or the attempts run out; answers the last answer. */
  async poll(
    url: string,
    done: (body: AcmeAnswer['body']) => boolean,
    attempts = 100,
    delayMs = 50,
  ): Promise<AcmeAnswer> {
    let answer = await this.post(url, '');
    for (let i = 0; i < attempts && !done(answer.body); i++) {
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      answer = await this.post(url, '');
    }
    return answer;
  }
}

export const b64u = (bytes: Uint8Array): string => base64url.encode(bytes);

/** A flattened JWS signed by `key` with exactly `header` as its protected header (keyChange's inner JWS). */
export function signedJws(
  key: AcmeKey,
  header: Record<string, unknown>,
  payload: unknown,
): Record<string, string> {
  return flattenedJws(key, { alg: key.alg, ...header }, base64url.encode(JSON.stringify(payload)));
}

/**
 * A flattened JWS with exactly `header`, signed here with node:crypto rather than jose, which
 * refuses to sign what a test must send.
 */
function flattenedJws(
  key: AcmeKey,
  header: Record<string, unknown>,
  payloadText: string,
): Record<string, string> {
  const protectedText = base64url.encode(JSON.stringify(header));
  const input = Buffer.from(`${protectedText}.${payloadText}`);
  const signature =
    key.alg === 'RS256'
      ? nodeSign('sha256', input, key.privateKey)
      : nodeSign(key.alg === 'ES256' ? 'sha256' : 'sha384', input, {
          key: key.privateKey,
          dsaEncoding: 'ieee-p1363',
        });
  return { protected: protectedText, payload: payloadText, signature: signature.toString('base64url') };
}

/** RFC 8555 §7.3.4: the account key MACed with an EAB key (HS256). */
export function eabBinding(
  accountJwk: JWK,
  kid: string,
  hmacKey: string,
  url: string,
  header: Record<string, unknown> = {},
): Record<string, string> {
  const protectedText = base64url.encode(JSON.stringify({ alg: 'HS256', kid, url, ...header }));
  const payloadText = base64url.encode(JSON.stringify(accountJwk));
  const signature = createHmac('sha256', Buffer.from(hmacKey, 'base64url'))
    .update(`${protectedText}.${payloadText}`)
    .digest('base64url');
  return { protected: protectedText, payload: payloadText, signature };
}
