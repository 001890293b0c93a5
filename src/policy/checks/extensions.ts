/** The extensions the CSR asks for, against what the policy allows. */

import { AsnConvert } from '@peculiar/asn1-schema';
import { BasicConstraints, KeyUsage, KeyUsageFlags } from '@peculiar/asn1-x509';
import type { ParsedCsr, RawExtension } from '../../x509/types.ts';
import { ANY_EXTENDED_KEY_USAGE, EXTENSION_OIDS, ekuName, ekuOid } from '../oids.ts';
import type { Policy } from '../types.ts';
import type { Decide, Refuse } from './shared.ts';

export const CA_REQUESTED =
  'The CSR asks for a CA certificate (basicConstraints CA:TRUE); policies issue end-entity certificates.';
// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a flat list of independent checks, one per extension the CSR may request
export function checkExtensions(
  policy: Policy,
  csr: ParsedCsr,
  refuse: Refuse,
  decide: Decide,
): RawExtension[] {
  const passthrough: RawExtension[] = [];
  const seen = new Set<string>();
  const extensions = Array.isArray(csr.extensions) ? csr.extensions : [];
  for (const extension of extensions) {
    const { oid } = extension;
    const field = `extensions[${oid}]`;
    if (seen.has(oid)) {
      refuse(
        'policy.extension_not_allowed',
        field,
        oid,
        'builtin.unique_extensions',
        `The extension ${oid} is requested twice (RFC 5280 §4.2).`,
      );
      continue;
    }
    seen.add(oid);
    const handled = handledExtension(oid, extension, csr.requestedCa === true);
    if (handled) {
      if (handled.caRequested) {
        refuse('policy.ca_requested', field, oid, 'builtin.no_ca', handled.caRequested);
        decide({
          field,
          kind: 'extension',
          value: oid,
          outcome: 'refused',
          rule: 'builtin.no_ca',
          reason: handled.caRequested,
        });
      } else {
        decide({
          field,
          kind: 'extension',
          value: oid,
          outcome: 'ignored',
          rule: handled.rule,
          reason: handled.reason,
        });
      }
      continue;
    }
    const index = policy.extensions.passthrough.indexOf(oid);
    if (index >= 0) {
      passthrough.push(extension);
      decide({
        field,
        kind: 'extension',
        value: oid,
        outcome: 'allowed',
        rule: `extensions.passthrough[${index}]`,
        reason: `${oid} is copied into the certificate as requested`,
      });
    } else if (policy.extensions.others === 'ignore') {
      decide({
        field,
        kind: 'extension',
        value: oid,
        outcome: 'ignored',
        rule: 'extensions.others',
        reason: `${oid} is not passed through, so the certificate leaves it out`,
      });
    } else {
      const message = `The CSR requests the extension ${oid}${extension.critical ? ' (critical)' : ''}, which this policy does not pass through.`;
      refuse('policy.extension_not_allowed', field, oid, 'extensions.passthrough', message);
      decide({
        field,
        kind: 'extension',
        value: oid,
        outcome: 'refused',
        rule: 'extensions.passthrough',
        reason: message,
      });
    }
  }

  if (csr.requestedCa === true && !seen.has(EXTENSION_OIDS.basicConstraints)) {
    refuse('policy.ca_requested', 'extensions[2.5.29.19]', 'CA:TRUE', 'builtin.no_ca', CA_REQUESTED);
  }
  const allowedEku = new Set(policy.extendedKeyUsage.map(ekuOid));
  for (const oid of csr.requestedEku ?? []) {
    const name = ekuName(oid);
    if (oid === ANY_EXTENDED_KEY_USAGE) {
      refuse(
        'policy.eku_not_allowed',
        'extensions[2.5.29.37]',
        'anyExtendedKeyUsage',
        'builtin.no_any_eku',
        'The CSR asks for anyExtendedKeyUsage, which would let the certificate be used for any purpose.',
      );
    } else if (!allowedEku.has(oid)) {
      refuse(
        'policy.eku_not_allowed',
        'extensions[2.5.29.37]',
        name,
        'extended_key_usage',
        `The CSR asks for the key purpose ${name}; this policy issues for ${policy.extendedKeyUsage.join(', ')}.`,
      );
    }
  }
  return passthrough;
}
/** Extensions the CA writes itself: requesting them is fine, except asking to be a CA. */
export function handledExtension(
  oid: string,
  extension: RawExtension,
  requestedCa: boolean,
): { rule: string; reason: string; caRequested?: string } | undefined {
  switch (oid) {
    case EXTENSION_OIDS.subjectAltName:
      return { rule: 'sans', reason: 'the SANs are decided name by name above' };
    case EXTENSION_OIDS.subjectKeyIdentifier:
      return { rule: 'builtin.ca_extensions', reason: 'the CA computes the subject key identifier itself' };
    case EXTENSION_OIDS.tlsFeature:
      return {
        rule: 'ocsp_must_staple',
        reason: 'whether the certificate requires OCSP stapling comes from the policy',
      };
    case EXTENSION_OIDS.extendedKeyUsage:
      return { rule: 'extended_key_usage', reason: "the certificate's key purposes come from the policy" };
    case EXTENSION_OIDS.basicConstraints:
      return requestedCa || extensionAsksForCa(extension)
        ? {
            rule: 'builtin.no_ca',
            reason: '',
            caRequested: CA_REQUESTED,
          }
        : { rule: 'builtin.ca_extensions', reason: 'the CA writes basicConstraints itself (CA:FALSE)' };
    case EXTENSION_OIDS.keyUsage: {
      const flags = keyUsageFlags(extension.value);
      if (flags === undefined) {
        return {
          rule: 'builtin.no_ca',
          reason: '',
          caRequested:
            'The CSR requests a key usage that does not parse; it is refused rather than guessed at.',
        };
      }
      if (flags & (KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign)) {
        return {
          rule: 'builtin.no_ca',
          reason: '',
          caRequested:
            'The CSR asks for keyCertSign or cRLSign, which only CA certificates carry (RFC 5280 §4.2.1.3).',
        };
      }
      return { rule: 'key_usage', reason: "the certificate's key usage comes from the policy" };
    }
    default:
      return undefined;
  }
}
export function keyUsageFlags(value: Uint8Array): number | undefined {
  try {
    return AsnConvert.parse(value, KeyUsage).toNumber();
  } catch {
    return undefined;
  }
}

// RFC 5280 §4.2.1.9. The parsed CSR reports cA as requestedCa; the extension is read here too,
// so that no shape of request can slip a CA:TRUE past, and one that does not parse is refused.
export function extensionAsksForCa(extension: RawExtension): boolean {
  try {
    return AsnConvert.parse(extension.value, BasicConstraints).cA;
  } catch {
    return true;
  }
}
