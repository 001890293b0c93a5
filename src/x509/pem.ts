/**
 * PEM (RFC 7468) writing and strict reading. Labels: `CERTIFICATE`, `X509 CRL` (RFC 7468 §6:
 * OpenSSL 3 cannot read the `CRL` label some libraries write, NOTES.md), `CERTIFICATE REQUEST`
 * (the legacy `NEW CERTIFICATE REQUEST` is accepted on input, RFC 7468 §7).
 */

export const PEM_LABEL = {
  certificate: 'CERTIFICATE',
  crl: 'X509 CRL',
  csr: 'CERTIFICATE REQUEST',
  legacyCsr: 'NEW CERTIFICATE REQUEST',
  publicKey: 'PUBLIC KEY',
} as const;

export type PemErrorReason = 'no_block' | 'wrong_label' | 'garbage' | 'bad_base64' | 'several_blocks';

export class PemError extends Error {
  override readonly name = 'PemError';
  constructor(
    readonly reason: PemErrorReason,
    message: string,
  ) {
    super(message);
  }
}

/** RFC 7468 §2: base64 in lines of 64 characters, LF line ends, a final newline. */
export function toPem(der: Uint8Array, label: string): string {
  const base64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < base64.length; i += 64) lines.push(base64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

export interface PemBlock {
  label: string;
  der: Uint8Array;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END ([A-Z0-9 ]+)-----/g;

/**
 * Reads every PEM block of `text`. Only whitespace may surround and separate the blocks (no
 * explanatory text, no RFC 1421 headers), labels must match, base64 must be canonical.
 */
export function decodePemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  let last = 0;
  for (const match of text.matchAll(BLOCK)) {
    if (text.slice(last, match.index).trim() !== '') {
      throw new PemError('garbage', 'text outside the PEM block');
    }
    const [whole, label, body, endLabel] = match;
    if (label !== endLabel) throw new PemError('garbage', `BEGIN ${label} closed by END ${endLabel}`);
    blocks.push({ label: label!, der: decodeBase64Strict(body!) });
    last = match.index + whole.length;
  }
  if (text.slice(last).trim() !== '') throw new PemError('garbage', 'text outside the PEM block');
  if (blocks.length === 0) throw new PemError('no_block', 'no PEM block found');
  return blocks;
}

/** Reads exactly one PEM block whose label is one of `labels`. */
export function decodePem(text: string, labels: string | readonly string[]): PemBlock {
  const accepted = typeof labels === 'string' ? [labels] : labels;
  const blocks = decodePemBlocks(text);
  if (blocks.length > 1) throw new PemError('several_blocks', 'more than one PEM block');
  const block = blocks[0]!;
  if (!accepted.includes(block.label)) {
    throw new PemError('wrong_label', `PEM label ${block.label}; expected ${accepted.join(' or ')}`);
  }
  return block;
}

function decodeBase64Strict(body: string): Uint8Array {
  const compact = body.replace(/[ \t\r\n]/g, '');
  if (compact.length === 0 || compact.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(compact)) {
    throw new PemError('bad_base64', 'PEM body is not base64');
  }
  const bytes = Buffer.from(compact, 'base64');
  // Buffer ignores non-zero padding bits; a canonical encoding round-trips exactly.
  if (bytes.toString('base64') !== compact)
    throw new PemError('bad_base64', 'PEM body is not canonical base64');
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** PEM of one certificate. */
export const certificateToPem = (der: Uint8Array): string => toPem(der, PEM_LABEL.certificate);
/** PEM of one CRL with the RFC 7468 label OpenSSL reads. */
export const crlToPem = (der: Uint8Array): string => toPem(der, PEM_LABEL.crl);

/** DER of a certificate given as DER or PEM. */
export function certificateDer(input: Uint8Array | string): Uint8Array {
  return typeof input === 'string' ? decodePem(input, PEM_LABEL.certificate).der : input;
}
