import { createHash } from 'node:crypto';
import { acmeError } from '../errors.ts';
import type { ValidationNetwork } from './network.ts';

/**
 * dns-01 (RFC 8555 §8.4): a TXT record at `_acme-challenge.{domain}` holding the base64url
 * SHA-256 of the key authorization. For a wildcard order the domain is the name below `*.`.
 * CNAMEs are followed by the resolver.
 */
export async function validateDns01(input: {
  domain: string;
  keyAuthorization: string;
  network: ValidationNetwork;
}): Promise<void> {
  const name = `_acme-challenge.${input.domain}`;
  const expected = createHash('sha256').update(input.keyAuthorization).digest('base64url');
  const records = await input.network.txt(name);
  if (records.length === 0) throw acmeError('dns', `no TXT record at ${name}`);
  if (!records.includes(expected)) {
    throw acmeError(
      'incorrectResponse',
      `none of the ${records.length} TXT record${records.length === 1 ? '' : 's'} at ${name} is the digest of this challenge key authorization`,
    );
  }
}
