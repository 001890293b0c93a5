import type { San } from '../../x509/types.ts';
import type { PolicyViolationCode } from '../codes.ts';
import { printable } from '../text.ts';
import type { Decision } from '../types.ts';

/**
 * Names beyond this many are not examined one by one (the request is refused for its count
 * anyway); it bounds the work a hostile request can cause. sans.max is at most 1000.
 */
export const MAX_EXAMINED_SANS = 1000;
export const MAX_VALUE_LENGTH = 256;
export interface CheckedSan {
  san: San;
  /** How duplicates and the CN are compared: IPv4-mapped IPv6 as IPv4. */
  key: string;
}
export type Refuse = (
  code: PolicyViolationCode,
  field: string,
  value: string,
  rule: string,
  message: string,
) => void;
export type Decide = (decision: Decision) => void;
export type SanResult =
  | { ok: true; value: string; key: string; rule: string; reason: string }
  | { ok: false; code: PolicyViolationCode; rule: string; message: string };
export function ok(value: string, key: string, rule: string, reason: string): SanResult {
  return { ok: true, value, key, rule, reason };
}
export function summarise(items: string[]): string {
  const shown = items.slice(0, 5);
  const more = items.length - shown.length;
  return `${shown.join(', ')}${more > 0 ? ` and ${more} more` : ''}`;
}
export function shorten(value: string): string {
  const text = printable(value);
  return text.length > MAX_VALUE_LENGTH ? `${text.slice(0, MAX_VALUE_LENGTH)}...` : text;
}
