import { createHash } from 'node:crypto';
import { lintCrl } from '../lint/crl.ts';
import {
  type CrlEntry,
  type CrlEntrySource,
  encodeCrlEntry,
  encodeCrlTbs,
  type IssuingDistributionPointOptions,
} from '../x509/crl-encoder.ts';
import { bitString, TAG, tlv } from '../x509/der.ts';
import { type IssuerFacts, readIssuerFacts } from './issuer.ts';
import {
  assertPurpose,
  type RevocationSigner,
  STREAM_CHUNK_BYTES,
  signatureSchemeFor,
  signWith,
  verifyWith,
} from './signing.ts';

export { type CrlEntry, type CrlEntrySource, encodeCrlEntry, type IssuingDistributionPointOptions };

export interface BuildCrlInput {
  /** The issuer certificate (DER), or its facts already read. */
  issuer: Uint8Array | IssuerFacts;
  /** The issuer's key handle with purpose 'crl'. */
  signer: RevocationSigner;
  /** From `nextCrlNumber` (crl-number.ts). */
  number: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  entries?: CrlEntrySource;
  issuingDistributionPoint?: IssuingDistributionPointOptions;
  /** A delta CRL (RFC 5280 §5.2.4): the number of the complete CRL it updates. */
  baseCrlNumber?: bigint;
  /** A complete CRL whose deltas are published: where (RFC 5280 §5.2.6). */
  freshestCrlUris?: string[];
  /** Piece size for a streaming signer. */
  chunkBytes?: number;
}

export interface BuiltCrl {
  der: Uint8Array;
  number: bigint;
  /** Whole seconds, as signed. */
  thisUpdate: Date;
  nextUpdate: Date;
  entryCount: number;
  /** SHA-256 of `der`: a strong ETag for every node serving these bytes. */
  sha256: Uint8Array;
}

/**
 * Builds, lints (src/lint/crl.ts) and signs a full CRL (RFC 5280 §5) with src/x509's CRL encoder. Entries are encoded as
 * their pages arrive and only their DER is kept; the signature is streamed through
 * `signer.signStream` when available, then checked against the issuer's public key before the CRL
 * is returned.
 */
export async function buildCrl(input: BuildCrlInput): Promise<BuiltCrl> {
  const issuer = input.issuer instanceof Uint8Array ? readIssuerFacts(input.issuer) : input.issuer;
  assertPurpose(input.signer.key, 'crl');
  const scheme = signatureSchemeFor(input.signer.key);
  const { tbs, thisUpdate, nextUpdate, entryCount } = await encodeCrlTbs({
    issuer,
    signatureAlgorithm: scheme.algorithmIdentifier,
    number: input.number,
    thisUpdate: input.thisUpdate,
    nextUpdate: input.nextUpdate,
    ...(input.entries === undefined ? {} : { entries: input.entries }),
    ...(input.issuingDistributionPoint ? { issuingDistributionPoint: input.issuingDistributionPoint } : {}),
    ...(input.baseCrlNumber === undefined ? {} : { baseCrlNumber: input.baseCrlNumber }),
    ...(input.freshestCrlUris?.length ? { freshestCrlUris: input.freshestCrlUris } : {}),
  });
  // Lint before sign, as for certificates: a CRL the rules refuse is never signed.
  const errors = lintCrl(tbs, { issuer }).filter((finding) => finding.severity === 'error');
  if (errors.length > 0) {
    throw new Error(`the CRL fails lint: ${errors.map((f) => `${f.rule}: ${f.message}`).join('; ')}`);
  }
  const signature = await signWith(input.signer, scheme, tbs, {
    chunkBytes: input.chunkBytes ?? STREAM_CHUNK_BYTES,
  });
  if (!verifyWith(scheme, issuer.publicKey, tbs, signature)) {
    throw new Error(
      'the CRL signature does not verify under the issuer certificate key: wrong key handle or a faulty signer',
    );
  }
  const der = tlv(TAG.SEQUENCE, tbs, scheme.algorithmIdentifier, bitString(signature));
  return {
    der,
    number: input.number,
    thisUpdate,
    nextUpdate,
    entryCount,
    sha256: new Uint8Array(createHash('sha256').update(der).digest()),
  };
}
