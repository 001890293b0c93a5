import {
  createPrivateKey,
  generateKeyPairSync,
  type KeyObject,
  type KeyPairKeyObjectResult,
  randomBytes,
  randomUUID,
  sign,
  type X509Certificate,
} from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { CompactSign, exportJWK } from 'jose';
import { signatureAlgorithmIdentifier } from '../x509/algorithms.ts';
import { encodeExtension } from '../x509/certificate.ts';
import { contextTag, integerFromNumber, oid, sequence, setOf, TAG, tlv } from '../x509/der.ts';
import { canonicalIp, encodeGeneralNames, encodeName } from '../x509/names.ts';
import { OID } from '../x509/oids.ts';
import type { San } from '../x509/types.ts';

/**
 * What `signet certificate create | renew` do on the machine that holds the key (issue #32):
 * make the key and the CSR, write key, leaf and chain files atomically, and prove possession of
 * the key to the CA with a JWS. The private key never leaves this process but to its file.
 */

export const KEY_TYPES = ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072', 'ed25519'] as const;
export type KeyType = (typeof KEY_TYPES)[number];

/** How each key type is generated (node:crypto) and how it signs its CSR (RFC 5480, RFC 8410). */
const KEY_GENERATION: Record<
  KeyType,
  { generate: () => KeyPairKeyObjectResult; hash: 'sha256' | 'sha384' | null }
> = {
  'ecdsa-p256': { generate: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }), hash: 'sha256' },
  'ecdsa-p384': { generate: () => generateKeyPairSync('ec', { namedCurve: 'P-384' }), hash: 'sha384' },
  'rsa-2048': { generate: () => generateKeyPairSync('rsa', { modulusLength: 2048 }), hash: 'sha256' },
  'rsa-3072': { generate: () => generateKeyPairSync('rsa', { modulusLength: 3072 }), hash: 'sha256' },
  ed25519: { generate: () => generateKeyPairSync('ed25519'), hash: null },
};

/** A name from the command line as a SAN: an IP address, an email, a URI, else a DNS name. */
export function sanOf(name: string): San {
  const ip = canonicalIp(name);
  if (ip !== undefined) return { type: 'ip', value: ip };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(name)) return { type: 'uri', value: name };
  if (name.includes('@')) return { type: 'email', value: name };
  return { type: 'dns', value: name.toLowerCase() };
}

/** The file name a certificate's first name gives its files: no path separators, no colons. */
export function fileStem(name: string): string {
  return name.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').replace(/[/\\:?#\s]/g, '_');
}

/**
 * A new key pair and a PKCS#10 CSR (RFC 2986, PEM) for the names, built with the project's DER
 * helpers and signed with node:crypto; the CN is the first DNS name when it fits (64 characters).
 */
export function makeKeyAndCsr(names: string[], keyType: KeyType): { keyPem: string; csrPem: string } {
  const { generate, hash } = KEY_GENERATION[keyType];
  const { publicKey, privateKey } = generate();
  const sans = names.map(sanOf);
  const cn = sans.find((san) => san.type === 'dns' && san.value.length <= 64);
  const extensionRequest = sequence(
    oid(OID.extensionRequest),
    setOf([sequence(encodeExtension(OID.subjectAltName, !cn, encodeGeneralNames(sans)))]),
  );
  const info = sequence(
    integerFromNumber(0),
    encodeName(cn ? [{ type: 'CN', value: cn.value }] : []),
    new Uint8Array(publicKey.export({ type: 'spki', format: 'der' })),
    tlv(contextTag(0, true), extensionRequest),
  );
  const signature = sign(hash, info, privateKey);
  const algorithm =
    keyType === 'ed25519'
      ? signatureAlgorithmIdentifier('ed25519')
      : signatureAlgorithmIdentifier(keyType.startsWith('rsa') ? 'rsa-pkcs1' : 'ecdsa', hash ?? 'sha256');
  const csr = sequence(info, algorithm, tlv(TAG.BIT_STRING, new Uint8Array([0]), new Uint8Array(signature)));
  return {
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    csrPem: toPem('CERTIFICATE REQUEST', csr),
  };
}

function toPem(label: string, der: Uint8Array): string {
  const base64 = Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${base64}\n-----END ${label}-----\n`;
}

/**
 * Writes each file to a temporary name in its folder, flushes it, then renames them all into
 * place, so a reader sees the old file or the new one, never half of one. Key files get 0600
 * from their creation on. Refuses (before writing anything) to replace a file unless `force`.
 */
export function writeFilesAtomically(
  files: { path: string; content: string; mode: number }[],
  { force = false }: { force?: boolean } = {},
): void {
  if (!force) {
    for (const file of files) {
      let exists = true;
      try {
        closeSync(openSync(file.path, 'r'));
      } catch {
        exists = false;
      }
      if (exists) throw new FileExistsError(file.path);
    }
  }
  const temporaries: { from: string; to: string }[] = [];
  try {
    for (const file of files) {
      const temporary = path.join(
        path.dirname(file.path),
        `.${path.basename(file.path)}.${randomBytes(6).toString('hex')}.tmp`,
      );
      const fd = openSync(temporary, 'wx', file.mode);
      temporaries.push({ from: temporary, to: file.path });
      try {
        writeSync(fd, file.content);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
    for (const { from, to } of temporaries) renameSync(from, to);
    // The renames themselves survive a crash once the folder is flushed.
    for (const folder of new Set(files.map((f) => path.dirname(f.path)))) {
      const fd = openSync(folder, 'r');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
  } catch (error) {
    for (const { from } of temporaries) rmSync(from, { force: true });
    throw error;
  }
}

export class FileExistsError extends Error {
  override readonly name = 'FileExistsError';
  constructor(readonly file: string) {
    super(`${file} exists; refusing to overwrite it (--force replaces it)`);
  }
}

/** JWS alg for a private key (RFC 7518 §3.1, RFC 8037 §3.1). */
function jwsAlgorithm(key: KeyObject): string {
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'prime256v1') return 'ES256';
      if (curve === 'secp384r1') return 'ES384';
      throw new Error(`an EC key on ${curve} cannot sign a renewal request (P-256 or P-384)`);
    }
    case 'rsa':
      return 'RS256';
    case 'rsa-pss':
      return 'PS256';
    case 'ed25519':
      return 'EdDSA';
    default:
      throw new Error(`a ${key.asymmetricKeyType} key cannot sign a renewal request`);
  }
}

export function readPrivateKey(pem: string | Buffer): KeyObject {
  return createPrivateKey(pem);
}

/** The renewal request body: a compact JWS signed by the certificate's key (src/ca/renew.usecase.ts). */
export async function renewalJws(
  key: KeyObject,
  claims: { serial: string; now: Date; csr?: string },
): Promise<string> {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...jwk } = await exportJWK(key);
  const payload = {
    serial: claims.serial,
    iat: Math.floor(claims.now.getTime() / 1000),
    jti: randomUUID(),
    ...(claims.csr ? { csr: claims.csr } : {}),
  };
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ alg: jwsAlgorithm(key), jwk })
    .sign(key);
}

/** The certificate's serial as the API writes it: lowercase hex of the INTEGER's content octets. */
export function serialOf(certificate: X509Certificate): string {
  const hex = certificate.serialNumber.toLowerCase();
  const even = hex.length % 2 === 0 ? hex : `0${hex}`;
  // A serial whose first octet has its high bit set carries a leading 00 in DER.
  return /^[89a-f]/.test(even) ? `00${even}` : even;
}

/** When a certificate is due for renewal: two thirds of its lifetime. */
export function renewalDue(certificate: X509Certificate): Date {
  const notBefore = new Date(certificate.validFrom).getTime();
  const notAfter = new Date(certificate.validTo).getTime();
  return new Date(notBefore + ((notAfter - notBefore) * 2) / 3);
}

/** Does `key` belong to `certificate`? */
export function keyMatches(certificate: X509Certificate, key: KeyObject): boolean {
  return certificate.checkPrivateKey(key);
}
