import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { base64url, type FlattenedJWSInput, flattenedVerify, type JWK } from 'jose';
import { AppError } from '../lib/errors.ts';
import { type AcmeCall, type AcmeContext, countFailure, thumbprintOf } from './context.ts';
import { acmeError } from './errors.ts';
import type { AcmeDirectoryConfig, EabSealer } from './types.ts';

/**
 * External account binding (RFC 8555 §7.3.4). An admin makes an HS256 key for one directory and
 * a set of policies; the client signs its new account key with it; the account is then bound to
 * the key, which binds nothing else, and may order under the key's policies only.
 *
 * The HMAC key is held like the CA's other secrets: never in clear in the database. It is sealed
 * with AES-256-GCM under a key derived from a signature by a non-extractable Ed25519 key in the
 * partition (`acme.eabKey`, purposes exactly ['other'], which the PKCS#11 front end does not
 * expose for Ed25519). Pure Ed25519 is deterministic (RFC 8032 §5.1.6), so the same key id
 * always yields the same sealing key, and only the partition can compute it: a copy of the
 * database alone opens nothing. Each seal and each open is one signature in the partition's
 * audit log.
 */

/** What sealing needs of the partition: one signature with a fixed key (a narrowed KeyManager.sign). */
export interface EabPartition {
  sign(request: {
    key: { uri: string };
    mechanism: 'ed25519';
    purpose: 'other';
    data: Uint8Array;
  }): Promise<Uint8Array>;
}

const CONTEXT = 'signet acme eab v1\0';
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** RFC 7518 §3.2: an HS256 key of at least the hash size. */
export const EAB_KEY_BYTES = 32;

export function createPartitionEabSealer({
  partition,
  keyUri,
}: {
  partition: EabPartition;
  keyUri: string;
}): EabSealer {
  const info = (kid: string) => Buffer.from(`${CONTEXT}${kid}`, 'utf8');
  async function sealingKey(kid: string): Promise<Buffer> {
    const signature = await partition.sign({
      key: { uri: keyUri },
      mechanism: 'ed25519',
      purpose: 'other',
      data: info(kid),
    });
    return createHash('sha256').update(info(kid)).update(signature).digest();
  }
  return {
    async seal(kid, key) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', await sealingKey(kid), iv);
      cipher.setAAD(info(kid));
      const body = Buffer.concat([cipher.update(key), cipher.final()]);
      return new Uint8Array(Buffer.concat([iv, cipher.getAuthTag(), body]));
    },
    async open(kid, sealed) {
      const bytes = Buffer.from(sealed);
      if (bytes.length < IV_BYTES + TAG_BYTES + 1) throw new Error('sealed EAB key is too short');
      const decipher = createDecipheriv('aes-256-gcm', await sealingKey(kid), bytes.subarray(0, IV_BYTES));
      decipher.setAAD(info(kid));
      decipher.setAuthTag(bytes.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
      return new Uint8Array(
        Buffer.concat([decipher.update(bytes.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]),
      );
    },
  };
}

/** The policies a directory offers: its default policy and its profiles (draft-ietf-acme-profiles). */
export const offeredPolicies = (directory: AcmeDirectoryConfig): string[] => [
  directory.policy,
  ...(directory.profiles ?? []).filter((p) => p !== directory.policy),
];

export interface CreatedEabKey {
  kid: string;
  /** base64url of the HS256 key: shown once, to the admin who made it. */
  hmacKey: string;
  directory: string;
  policies: string[];
  createdAt: Date;
  expiresAt: Date | null;
}

/** `POST /v1/acme/eab-keys` and `signet acme eab create`: a new single-use HS256 key. */
export async function createEabKey(
  ctx: AcmeContext,
  input: { directory: string; policies: string[]; expiresAt: Date | null; createdBy: string },
): Promise<CreatedEabKey> {
  const directory = ctx.options.directories.find((d) => d.name === input.directory);
  if (!directory) {
    throw new AppError(
      'acme.unknown_directory',
      'invalid',
      `there is no ACME directory named ${input.directory}`,
    );
  }
  const offered = offeredPolicies(directory);
  const foreign = input.policies.filter((p) => !offered.includes(p));
  if (input.policies.length === 0 || foreign.length > 0) {
    throw new AppError(
      'acme.eab_policy_not_offered',
      'invalid',
      input.policies.length === 0
        ? 'an EAB key needs at least one policy'
        : `directory ${directory.name} does not offer ${foreign.join(', ')}; it offers ${offered.join(', ')}`,
    );
  }
  const sealer = ctx.options.eabSealer;
  if (!sealer) {
    throw new AppError(
      'acme.eab_unavailable',
      'unavailable',
      'EAB keys cannot be made: the partition key acme.eabKey is not available',
    );
  }
  const kid = optionSafe(12).toString('base64url');
  const key = optionSafe(EAB_KEY_BYTES);
  let sealed: Uint8Array;
  try {
    sealed = await sealer.seal(kid, key);
  } catch (error) {
    throw new AppError(
      'acme.eab_unavailable',
      'unavailable',
      'the EAB key could not be sealed: the partition is unavailable or lacks the key acme.eabKey (signet init creates it; an older data folder needs an Ed25519 key of purpose other at that URI); retry later',
      undefined,
      { cause: error },
    );
  }
  const record = await ctx.options.repository.createEabKey({
    id: kid,
    directory: directory.name,
    policies: [...new Set(input.policies)],
    sealed,
    createdBy: input.createdBy,
    expiresAt: input.expiresAt,
  });
  await ctx.audit({
    actor: input.createdBy,
    action: 'acme.eab.create',
    target: `acme-eab:${kid}`,
    decision: 'allowed',
    details: {
      directory: directory.name,
      policies: record.policies,
      expiresAt: input.expiresAt?.toISOString() ?? null,
    },
  });
  return {
    kid,
    hmacKey: key.toString('base64url'),
    directory: record.directory,
    policies: record.policies,
    createdAt: record.createdAt,
    expiresAt: record.expiresAt,
  };
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Checks a newAccount's `externalAccountBinding` (RFC 8555 §7.3.4): a flattened JWS, HS256, with
 * `kid` and `url` (the newAccount URL) and no nonce, over the account's JWK, MACed with an EAB
 * key of this directory that is unused and unexpired. Answers the key id and its policies; the
 * key is consumed when the account is stored. Every refusal of the key itself is `unauthorized`
 * and counts against the client's failed-authentication budget.
 */
export async function checkExternalAccountBinding(
  ctx: AcmeContext,
  call: AcmeCall,
  binding: unknown,
  accountJwk: JWK,
): Promise<{ kid: string; policies: string[] }> {
  if (
    !isObject(binding) ||
    typeof binding.protected !== 'string' ||
    typeof binding.payload !== 'string' ||
    typeof binding.signature !== 'string'
  ) {
    throw acmeError('malformed', '"externalAccountBinding" must be a flattened JWS (RFC 8555 §7.3.4)');
  }
  let header: unknown;
  let payload: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(base64url.decode(binding.protected)));
    payload = JSON.parse(new TextDecoder().decode(base64url.decode(binding.payload)));
  } catch (error) {
    throw acmeError('malformed', 'the external account binding is not base64url-encoded JSON', {
      cause: error,
    });
  }
  if (!isObject(header) || header.alg !== 'HS256' || typeof header.kid !== 'string') {
    throw acmeError(
      'malformed',
      'the external account binding needs "alg": "HS256" and a "kid" (RFC 8555 §7.3.4)',
    );
  }
  if ('nonce' in header) throw acmeError('malformed', 'the external account binding must not carry a nonce');
  if (header.url !== call.url) {
    throw acmeError('unauthorized', 'the external account binding "url" is not the newAccount URL');
  }
  if (
    !isObject(payload) ||
    (await thumbprintOf(payload as JWK).catch(() => '')) !== (await thumbprintOf(accountJwk))
  ) {
    throw acmeError('malformed', 'the external account binding must sign the account key of this request');
  }
  const kid = header.kid;
  const failedAuth = ctx.options.limits.failedAuth;
  const refuse = async (detail: string) => {
    await countFailure(failedAuth, call.request.client);
    return acmeError('unauthorized', detail);
  };
  const record = /^[A-Za-z0-9_-]{1,64}$/.test(kid) ? await ctx.options.repository.findEabKey(kid) : null;
  if (!record || record.directory !== call.directory.name) {
    throw await refuse(`there is no external account key ${kid.slice(0, 64)} for this directory`);
  }
  if (record.accountId !== null) throw await refuse('this external account key has already been used');
  if (record.expiresAt && record.expiresAt <= ctx.now())
    throw await refuse('this external account key has expired');
  const sealer = ctx.options.eabSealer;
  if (!sealer)
    throw acmeError('serverInternal', 'external account binding is not available', { status: 503 });
  let key: Uint8Array;
  try {
    key = await sealer.open(kid, record.sealed);
  } catch (error) {
    throw acmeError('serverInternal', 'the external account key cannot be read right now; retry later', {
      status: 503,
      retryAfter: 5,
      cause: error,
    });
  }
  try {
    await flattenedVerify(binding as unknown as FlattenedJWSInput, key, { algorithms: ['HS256'] });
  } catch {
    throw await refuse('the external account binding MAC does not verify with that key');
  }
  return { kid, policies: record.policies };
}

/**
 * Random octets whose base64url text does not start with '-': operators pass the key id and the
 * HMAC key to ACME clients on their command line (certbot --eab-kid, lego --kid), where a value
 * starting with '-' reads as an option. Drawing again costs one bit in 64 of the first character.
 */
export function optionSafe(length: number): Buffer {
  for (;;) {
    const bytes = randomBytes(length);
    // base64url's first character is '-' (62) exactly when the first six bits are 111110.
    if (bytes[0]! >> 2 !== 62) return bytes;
  }
}
