import { AsnConvert } from '@peculiar/asn1-schema';
import { AuthorityKeyIdentifier, Certificate, id_ce_authorityKeyIdentifier } from '@peculiar/asn1-x509';
import { normalizeSerial } from '../lib/serial.ts';
import type { AcmeCall, AcmeContext } from './context.ts';
import { acmeError } from './errors.ts';
import type { AcmeResponse } from './types.ts';

/**
 * ACME Renewal Information (RFC 9773): the directory's `renewalInfo` URL, a certificate
 * identifier of the authority key identifier and the serial, and the window in which the CA
 * suggests renewing. A revoked certificate's window lies in the past, so a client renews at once.
 */

/** RFC 9773 §4.2: how long a client should wait before asking again (six hours, as Let's Encrypt). */
export const RENEWAL_INFO_RETRY_AFTER_SECONDS = 21_600;

export interface CertId {
  /** The AKI keyIdentifier octets. */
  keyIdentifier: Buffer;
  /** Lowercase hex of the serial's content octets (DESIGN.md "Serials"). */
  serial: string;
  /** The identifier as a client writes it. */
  text: string;
}

/** RFC 9773 §4.1: base64url(AKI keyIdentifier) "." base64url(serial DER content octets). */
export function parseCertId(text: unknown): CertId {
  if (typeof text !== 'string' || !/^[A-Za-z0-9_-]{1,128}\.[A-Za-z0-9_-]{1,64}$/.test(text)) {
    throw acmeError(
      'malformed',
      'a certificate identifier is base64url(AKI keyIdentifier).base64url(serial) (RFC 9773 §4.1)',
    );
  }
  const [aki, serialText] = text.split('.') as [string, string];
  const keyIdentifier = Buffer.from(aki, 'base64url');
  const serialBytes = Buffer.from(serialText, 'base64url');
  if (keyIdentifier.length === 0 || serialBytes.length === 0 || serialBytes.length > 21) {
    throw acmeError('malformed', 'the certificate identifier has an empty or oversized part (RFC 9773 §4.1)');
  }
  let serial: string;
  try {
    serial = normalizeSerial(serialBytes.toString('hex'));
  } catch (error) {
    throw acmeError('malformed', 'the certificate identifier names no valid serial number', { cause: error });
  }
  return { keyIdentifier, serial, text };
}

export interface CertificateTimes {
  keyIdentifier: Buffer | undefined;
  notBefore: Date;
  notAfter: Date;
}

export function certificateTimes(der: Uint8Array): CertificateTimes {
  const certificate = AsnConvert.parse(der, Certificate);
  const tbs = certificate.tbsCertificate;
  const akiExtension = (tbs.extensions ?? []).find((e) => e.extnID === id_ce_authorityKeyIdentifier);
  const aki = akiExtension
    ? AsnConvert.parse(akiExtension.extnValue.buffer, AuthorityKeyIdentifier).keyIdentifier
    : undefined;
  return {
    keyIdentifier: aki ? Buffer.from(aki.buffer) : undefined,
    notBefore: tbs.validity.notBefore.getTime(),
    notAfter: tbs.validity.notAfter.getTime(),
  };
}

/** The certificate a certID names, if this CA issued it (the AKI must match, not only the serial). */
export async function findByCertId(
  ctx: AcmeContext,
  id: CertId,
): Promise<{ times: CertificateTimes; status: string } | undefined> {
  const record = await ctx.options.certificates.findBySerial(id.serial);
  if (!record?.der) return undefined;
  const times = certificateTimes(record.der);
  if (!times.keyIdentifier?.equals(id.keyIdentifier)) return undefined;
  return { times, status: record.status };
}

/**
 * The suggested window (RFC 9773 §4.2): from two thirds to five sixths of the validity, which
 * leaves the last sixth for retries; for a revoked certificate, an hour in the past.
 */
export function suggestedWindow(
  times: CertificateTimes,
  revoked: boolean,
  now: Date,
): { start: Date; end: Date } {
  if (revoked) {
    return { start: new Date(now.getTime() - 2 * 3_600_000), end: new Date(now.getTime() - 3_600_000) };
  }
  const begin = times.notBefore.getTime();
  const lifetime = times.notAfter.getTime() - begin;
  return { start: new Date(begin + (lifetime * 2) / 3), end: new Date(begin + (lifetime * 5) / 6) };
}

/** GET {renewalInfo}/{certID}: unauthenticated, cacheable until Retry-After (RFC 9773 §4.2). */
export async function getRenewalInfo(
  ctx: AcmeContext,
  _call: AcmeCall,
  certIdText: string,
): Promise<AcmeResponse> {
  const id = parseCertId(certIdText);
  const found = await findByCertId(ctx, id);
  if (!found)
    throw acmeError('malformed', 'this CA issued no certificate with that identifier', { status: 404 });
  const window = suggestedWindow(found.times, found.status === 'revoked', ctx.now());
  return {
    status: 200,
    headers: {
      'content-type': 'application/json',
      'retry-after': String(RENEWAL_INFO_RETRY_AFTER_SECONDS),
    },
    links: [],
    body: { suggestedWindow: { start: window.start.toISOString(), end: window.end.toISOString() } },
  };
}

/** The certID of a certificate (its DER), as clients compute it: the serial's DER content octets. */
export function certIdOf(der: Uint8Array): string {
  const certificate = AsnConvert.parse(der, Certificate);
  const { keyIdentifier } = certificateTimes(der);
  if (!keyIdentifier) throw new Error('the certificate has no authority key identifier');
  const serial = Buffer.from(certificate.tbsCertificate.serialNumber);
  return `${keyIdentifier.toString('base64url')}.${serial.toString('base64url')}`;
}
