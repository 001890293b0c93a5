import type { KeyManager, KeyRef, SignMechanism } from '../hsm/types.ts';
import { isRevocationReason } from '../lib/revocation-reasons.ts';
import { encodeCrlTbs } from '../x509/crl-encoder.ts';
import { bitString, bitStringBytes, encoding, equalBytes, readDer, sequence } from '../x509/der.ts';
import type { IssuerContext } from '../x509/issuer.ts';
import { signatureValue, signatureVerifies } from './certificates.ts';
import { CeremonyError } from './errors.ts';
import type { RevocationEntry } from './validate.ts';

/**
 * The root CRL (RFC 5280 §5), encoded by src/x509's CRL encoder (the one the online CA uses):
 * v2, signed by the root key in the partition, with an Authority Key Identifier (§5.2.1), a CRL
 * Number (§5.2.3) and a critical Issuing Distribution Point saying onlyContainsCACerts (§5.2.5),
 * since a root revokes only CA certificates.
 */

export interface CrlRequest {
  issuer: IssuerContext;
  thisUpdate: Date;
  nextUpdate: Date;
  number: bigint;
  revoked: RevocationEntry[];
}

export async function buildCrlTbs(request: CrlRequest): Promise<Uint8Array> {
  const entries = [...request.revoked]
    .sort((a, b) => (a.serial < b.serial ? -1 : a.serial > b.serial ? 1 : 0))
    .map((entry) => ({
      serial: entry.serial,
      revokedAt: new Date(entry.revocationDate),
      reason: entry.reason && isRevocationReason(entry.reason) ? entry.reason : ('unspecified' as const),
    }));
  const { tbs } = await encodeCrlTbs({
    issuer: request.issuer,
    signatureAlgorithm: request.issuer.signatureAlgorithm.identifier,
    number: request.number,
    thisUpdate: request.thisUpdate,
    nextUpdate: request.nextUpdate,
    entries,
    // No distributionPoint name: with one, every certificate not listing it in its own CRL
    // distribution points (the root itself, which openssl's -crl_check_all also checks) would fall
    // outside this CRL's scope (RFC 5280 §5.2.5, §6.3.3(b)).
    issuingDistributionPoint: { onlyContainsCACerts: true },
  });
  return tbs;
}

/** Signs the CRL in the partition, reads it back and checks the TBS and signature, as for certificates. */
export async function signCrl({
  tbs,
  keys,
  key,
  mechanism,
  issuer,
}: {
  tbs: Uint8Array;
  keys: KeyManager;
  key: KeyRef;
  mechanism: SignMechanism;
  issuer: IssuerContext;
}): Promise<Uint8Array> {
  const raw = await keys.sign({ key, mechanism, purpose: 'crl', data: tbs });
  const der = sequence(tbs, issuer.signatureAlgorithm.identifier, bitString(signatureValue(mechanism, raw)));
  const [tbsTlv, algorithmTlv, valueTlv] = readDer(der, { maxDepth: 12 }).children;
  if (!tbsTlv || !algorithmTlv || !valueTlv || !equalBytes(encoding(tbsTlv), tbs)) {
    throw new CeremonyError('ceremony.tbs_mismatch', 'the signed TBSCertList differs from the one built');
  }
  if (!signatureVerifies(mechanism, issuer.publicKey, tbs, bitStringBytes(valueTlv).bytes)) {
    throw new CeremonyError(
      'ceremony.signature_invalid',
      "the CRL's signature does not verify with the issuer's public key",
    );
  }
  return der;
}
