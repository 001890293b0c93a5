/** The CRL linter's shapes (src/lint/crl.ts), apart so that rules do not import the engine. */

import type { IssuerIdentity } from '../x509/issuer.ts';

export interface CrlExtension {
  critical: boolean;
  /** The extnValue's contents (the DER inside the OCTET STRING). */
  value: Uint8Array;
}

/** One entry, read shallowly: a CRL may hold a hundred thousand of them. */
export interface LintCrlEntry {
  serial: Uint8Array;
  /** The DER tag of revocationDate (UTCTime or GeneralizedTime) and the year its digits say. */
  revocationDateTag: number;
  revocationYear: number;
  /** Entry extensions by the DER of their OID (compare with x509/der's `oid()`). */
  extensions: readonly (CrlExtension & { oid: Uint8Array })[];
}

/** A TBSCertList as the CRL rules see it. */
export interface LintCrl {
  /** 1 or 2 (the INTEGER plus one); v1 has no version field. */
  version: number;
  issuer: Uint8Array;
  thisUpdateTag: number;
  thisUpdate: Date;
  nextUpdateTag?: number;
  nextUpdate?: Date;
  extensions: ReadonlyMap<string, CrlExtension>;
  /** Raw extension OIDs in order, duplicates included. */
  extensionOids: readonly string[];
  /** Walks the entries one by one (not held in memory together). */
  entries(): Iterable<LintCrlEntry>;
}

export interface CrlLintContext {
  /** The CA whose CRL this is. */
  issuer: Pick<IssuerIdentity, 'subject' | 'subjectKeyIdentifier'>;
}

export interface CrlLintRule {
  /** Also its file name under src/lint/crl-rules/. */
  id: string;
  citation: string;
  severity: 'error' | 'warning';
  check(crl: LintCrl, context: CrlLintContext): string[] | string | undefined;
}
