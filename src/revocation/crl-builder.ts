import { createHash } from 'node:crypto';
import { lintCrl } from '../lint/crl.ts';
import {
  type CrlEntry,
  type CrlEntrySource,
  encodeCrlEntry,
  encodeCrlTbsParts,
  type IssuingDistributionPointOptions,
} from '../x509/crl-encoder.ts';
import { bitString, concat, header, TAG } from '../x509/der.ts';
import type { SplicedEntries } from './crl-entry-cache.ts';
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
  /**
   * Instead of `entries`: the entries of an earlier CRL (linted then) with the changed ones spliced
   * in (crl-entry-cache.ts). The linter reads this CRL's header with the changed entries only.
   */
  spliced?: SplicedEntries;
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
  const common = {
    issuer,
    signatureAlgorithm: scheme.algorithmIdentifier,
    number: input.number,
    thisUpdate: input.thisUpdate,
    nextUpdate: input.nextUpdate,
    ...(input.issuingDistributionPoint ? { issuingDistributionPoint: input.issuingDistributionPoint } : {}),
    ...(input.baseCrlNumber === undefined ? {} : { baseCrlNumber: input.baseCrlNumber }),
    ...(input.freshestCrlUris?.length ? { freshestCrlUris: input.freshestCrlUris } : {}),
  };
  const { spliced } = input;
  if (spliced) {
    // Every other entry passed the linter in the CRL it came from: this CRL's own fields are
    // linted with the entries that are new in it (the same rules, on a TBS of those entries).
    const probe = await encodeCrlTbsParts({ ...common, entries: [spliced.changed] });
    lintOrThrow(concat(probe.parts), issuer);
  }
  const encoded = await encodeCrlTbsParts({
    ...common,
    ...(spliced
      ? { encodedEntries: spliced }
      : input.entries === undefined
        ? {}
        : { entries: input.entries }),
  });
  const { thisUpdate, nextUpdate, entryCount } = encoded;
  // One buffer holds the signed CRL: the TBS is copied into it once (the entries' own buffers are
  // then garbage), with room before it for the outer header and after it for the signature, so
  // a CRL of N MiB peaks near 2N MiB, not 3N (issue #28).
  const algorithm = scheme.algorithmIdentifier;
  const out = Buffer.allocUnsafe(HEAD_ROOM + encoded.length + algorithm.byteLength + SIGNATURE_ROOM);
  let offset = HEAD_ROOM;
  for (let part = encoded.parts.shift(); part; part = encoded.parts.shift()) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  const tbs = out.subarray(HEAD_ROOM, offset);
  // Lint before sign, as for certificates: a CRL the rules refuse is never signed.
  if (!spliced) lintOrThrow(tbs, issuer);
  const signature = await signWith(input.signer, scheme, tbs, {
    chunkBytes: input.chunkBytes ?? STREAM_CHUNK_BYTES,
  });
  if (!verifyWith(scheme, issuer.publicKey, tbs, signature)) {
    throw new Error(
      'the CRL signature does not verify under the issuer certificate key: wrong key handle or a faulty signer',
    );
  }
  const signatureValue = bitString(signature);
  if (signatureValue.byteLength > SIGNATURE_ROOM)
    throw new Error('the CRL signature is longer than expected');
  out.set(algorithm, offset);
  offset += algorithm.byteLength;
  out.set(signatureValue, offset);
  offset += signatureValue.byteLength;
  const head = header(TAG.SEQUENCE, offset - HEAD_ROOM);
  out.set(head, HEAD_ROOM - head.byteLength);
  const der = new Uint8Array(
    out.buffer,
    out.byteOffset + HEAD_ROOM - head.byteLength,
    offset - HEAD_ROOM + head.byteLength,
  );
  return {
    der,
    number: input.number,
    thisUpdate,
    nextUpdate,
    entryCount,
    sha256: new Uint8Array(createHash('sha256').update(der).digest()),
  };
}

function lintOrThrow(tbs: Uint8Array, issuer: IssuerFacts): void {
  const errors = lintCrl(tbs, { issuer }).filter((finding) => finding.severity === 'error');
  if (errors.length > 0) {
    throw new Error(`the CRL fails lint: ${errors.map((f) => `${f.rule}: ${f.message}`).join('; ')}`);
  }
}

/** The most an outer SEQUENCE header takes (tag and a 4-octet length: CRLs up to 4 GiB). */
const HEAD_ROOM = 6;
/** Room for the signature BIT STRING: RSA-4096 is 512 octets, ECDSA P-521 at most 139. */
const SIGNATURE_ROOM = 1024;
