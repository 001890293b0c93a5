import { AsnConvert } from '@peculiar/asn1-schema';
import { IssuingDistributionPoint } from '@peculiar/asn1-x509';
import type { KeyManager, KeyRef, SignMechanism } from '../hsm/types.ts';
import { REASON_CODES } from '../lib/revocation-reasons.ts';
import { encodeAuthorityKeyIdentifier, encodeExtension } from '../x509/certificate.ts';
import {
  bitString,
  bitStringBytes,
  contextTag,
  encoding,
  equalBytes,
  integerFromNumber,
  integerFromUnsigned,
  readDer,
  sequence,
  time,
  tlv,
} from '../x509/der.ts';
import type { IssuerContext } from '../x509/issuer.ts';
import { OID } from '../x509/oids.ts';
import { signatureValue, signatureVerifies } from './certificates.ts';
import { CeremonyError } from './errors.ts';
import type { RevocationEntry } from './validate.ts';

/**
 * The root CRL (RFC 5280 §5): v2, signed by the root key in the partition, with an Authority Key
 * Identifier (§5.2.1), a CRL Number (§5.2.3) and a critical Issuing Distribution Point saying
 * onlyContainsCACerts (§5.2.5), since a root revokes only CA certificates. Built from src/x509's
 * DER helpers; the IDP value with @peculiar/asn1-x509.
 */

const ID_CE_CRL_NUMBER = '2.5.29.20';
const ID_CE_ISSUING_DISTRIBUTION_POINT = '2.5.29.28';
const ID_CE_CRL_REASONS = '2.5.29.21';

export interface CrlRequest {
  issuer: IssuerContext;
  thisUpdate: Date;
  nextUpdate: Date;
  number: bigint;
  revoked: RevocationEntry[];
}

function unsignedBytes(value: bigint): Uint8Array {
  let hex = value.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

export function buildCrlTbs(request: CrlRequest): Uint8Array {
  const { issuer } = request;
  // No distributionPoint name: with one, every certificate not listing it in its own CRL
  // distribution points (the root itself, which openssl's -crl_check_all also checks) would fall
  // outside this CRL's scope (RFC 5280 §5.2.5, §6.3.3(b)).
  const idp = new IssuingDistributionPoint({ onlyContainsCACerts: true });
  const extensions = [
    encodeExtension(
      OID.authorityKeyIdentifier,
      false,
      encodeAuthorityKeyIdentifier(issuer.subjectKeyIdentifier),
    ),
    encodeExtension(ID_CE_CRL_NUMBER, false, integerFromUnsigned(unsignedBytes(request.number))),
    // RFC 5280 §5.2.5: the IDP is a critical CRL extension.
    encodeExtension(ID_CE_ISSUING_DISTRIBUTION_POINT, true, new Uint8Array(AsnConvert.serialize(idp))),
  ];
  const entries = [...request.revoked]
    .sort((a, b) => (a.serial < b.serial ? -1 : a.serial > b.serial ? 1 : 0))
    .map((entry) => {
      const fields = [
        integerFromUnsigned(
          new Uint8Array(Buffer.from(entry.serial.length % 2 ? `0${entry.serial}` : entry.serial, 'hex')),
        ),
        time(new Date(entry.revocationDate)),
      ];
      // RFC 5280 §5.3.1: the reason code unspecified SHOULD be absent.
      if (entry.reason && entry.reason !== 'unspecified') {
        const code = REASON_CODES[entry.reason as keyof typeof REASON_CODES];
        fields.push(sequence(encodeExtension(ID_CE_CRL_REASONS, false, tlv(0x0a, new Uint8Array([code])))));
      }
      return sequence(...fields);
    });
  const tbsFields = [
    integerFromNumber(1), // v2, RFC 5280 §5.1.2.1: required with extensions
    issuer.signatureAlgorithm.identifier,
    issuer.subject,
    time(request.thisUpdate),
    time(request.nextUpdate),
  ];
  // RFC 5280 §5.1.2.6: with no revoked certificates the list MUST be absent.
  if (entries.length > 0) tbsFields.push(sequence(...entries));
  tbsFields.push(tlv(contextTag(0, true), sequence(...extensions)));
  return sequence(...tbsFields);
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
