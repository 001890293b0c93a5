/**
 * RFC 5280 §4.2.1.3 key usage names, in bit order: the one list the policy schema, the ceremony
 * configuration, the linter and the certificate builder use.
 */
export const KEY_USAGE_NAMES = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
] as const;

/** Every named bit, with the two that only qualify keyAgreement (Signet never sets them). */
export const KEY_USAGE_BIT_NAMES = [...KEY_USAGE_NAMES, 'encipherOnly', 'decipherOnly'] as const;
