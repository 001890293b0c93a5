/**
 * What a subject attribute value may look like before any policy rule is applied: within the
 * RFC 5280 Appendix A upper bounds, of the attribute's string type, and free of characters that
 * change how a name displays (controls, bidirectional overrides, padding).
 */

import type { SubjectAttributeType } from '../x509/types.ts';
import { checkEmail } from './email.ts';
import { printable } from './text.ts';

/** RFC 5280 Appendix A ub-* bounds (street and postalCode from X.520). */
const MAX_LENGTH: Record<SubjectAttributeType, number> = {
  CN: 64,
  O: 64,
  OU: 64,
  C: 2,
  ST: 128,
  L: 128,
  serialNumber: 64,
  emailAddress: 255,
  DC: 63,
  street: 128,
  postalCode: 40,
};

// RFC 5280 §4.1.2.4: PrintableString's character set (X.680 §41.4).
const PRINTABLE_STRING = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

/** Why the value cannot be used for the attribute, or undefined when it can. */
export function checkSubjectValue(type: SubjectAttributeType, value: string): string | undefined {
  if (typeof value !== 'string' || value.length === 0) return 'the value is empty';
  const shown = printable(value);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this refuses
  if (/[\u0000-\u001f\u007f-\u009f]/.test(value)) return `'${shown}' contains control characters`;
  if (/[\u200e\u200f\u202a-\u202e\u2066-\u2069]/.test(value)) {
    return `'${shown}' contains bidirectional formatting characters, which can disguise a name`;
  }
  if (value.trim() !== value) return `'${shown}' starts or ends with white space`;
  const limit = MAX_LENGTH[type];
  if ([...value].length > limit) return `the value is longer than ${limit} characters (RFC 5280 Appendix A)`;
  switch (type) {
    case 'C':
      return /^[A-Z]{2}$/.test(value)
        ? undefined
        : `'${shown}' is not a two-letter ISO 3166 country code in upper case`;
    case 'serialNumber':
      return PRINTABLE_STRING.test(value) ? undefined : `'${shown}' has characters outside PrintableString`;
    case 'DC':
      return /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/.test(value)
        ? undefined
        : `'${shown}' is not a single DNS label (RFC 4519 §2.4)`;
    case 'emailAddress': {
      const email = checkEmail(value);
      return email.ok ? undefined : email.reason;
    }
    default:
      return undefined;
  }
}
