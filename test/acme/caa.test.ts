import { describe, expect, it } from 'vitest';
import { AcmeError } from '../../src/acme/errors.ts';
import { type CaaRecord, checkCaa, parseCaaValue, relevantCaaSet } from '../../src/acme/validation/caa.ts';

/** CAA (RFC 8659) with the account and method parameters (RFC 8657), over a map of records. */

const ACCOUNT = 'https://ca.example.net/acme/dev/account/abc';
const OTHER_ACCOUNT = 'https://ca.example.net/acme/dev/account/xyz';
const issue = (value: string, critical = 0): CaaRecord => ({ critical, tag: 'issue', value });
const issuewild = (value: string): CaaRecord => ({ critical: 0, tag: 'issuewild', value });
const lookup = (records: Record<string, CaaRecord[]>) => ({
  caa: async (name: string) => records[name] ?? [],
});

async function outcome(
  records: Record<string, CaaRecord[]>,
  check: { name?: string; wildcard?: boolean; method?: string } = {},
): Promise<string> {
  try {
    await checkCaa(lookup(records), ['ca.example.net'], {
      name: check.name ?? 'www.example.com',
      wildcard: check.wildcard ?? false,
      accountUri: ACCOUNT,
      method: check.method ?? 'http-01',
    });
    return 'allowed';
  } catch (error) {
    return (error as AcmeError).type;
  }
}

describe('CAA (RFC 8659, RFC 8657)', () => {
  it.each([
    ['no record anywhere: every CA may issue (§3)', {}, {}, 'allowed'],
    ['issue naming this CA', { 'www.example.com': [issue('ca.example.net')] }, {}, 'allowed'],
    [
      'issue naming this CA in another case, with spaces (§4.2)',
      { 'www.example.com': [issue(' CA.Example.NET ')] },
      {},
      'allowed',
    ],
    ['issue naming another CA only', { 'www.example.com': [issue('other.example.org')] }, {}, 'caa'],
    ['";": no CA may issue (§4.2)', { 'www.example.com': [issue(';')] }, {}, 'caa'],
    [
      'the set found climbing to the parent applies (§3)',
      { 'example.com': [issue('other.example.org')] },
      {},
      'caa',
    ],
    [
      'the nearest non-empty set wins over its parent (§3)',
      { 'www.example.com': [issue('ca.example.net')], 'example.com': [issue(';')] },
      {},
      'allowed',
    ],
    [
      'a set with only iodef authorises every CA (§4.2)',
      { 'www.example.com': [{ critical: 0, tag: 'iodef', value: 'mailto:x@example.com' }] },
      {},
      'allowed',
    ],
    [
      'an unknown critical property refuses (§4.1)',
      { 'www.example.com': [issue('ca.example.net'), { critical: 128, tag: 'future', value: 'x' }] },
      {},
      'caa',
    ],
    [
      'an unknown non-critical property is ignored (§4.1)',
      { 'www.example.com': [issue('ca.example.net'), { critical: 0, tag: 'future', value: 'x' }] },
      {},
      'allowed',
    ],
    [
      'issuewild governs a wildcard (§4.3)',
      { 'example.com': [issue('ca.example.net'), issuewild(';')] },
      { name: 'example.com', wildcard: true },
      'caa',
    ],
    [
      'issue governs a wildcard without issuewild (§4.3)',
      { 'example.com': [issue('ca.example.net')] },
      { name: 'example.com', wildcard: true },
      'allowed',
    ],
    [
      'issuewild does not govern a plain name (§4.3)',
      { 'www.example.com': [issuewild('ca.example.net'), issue(';')] },
      {},
      'caa',
    ],
    [
      'accounturi of this account (RFC 8657 §3)',
      { 'www.example.com': [issue(`ca.example.net; accounturi=${ACCOUNT}`)] },
      {},
      'allowed',
    ],
    [
      'accounturi of another account (RFC 8657 §3)',
      { 'www.example.com': [issue(`ca.example.net; accounturi=${OTHER_ACCOUNT}`)] },
      {},
      'caa',
    ],
    [
      'another record for this account still grants (RFC 8657 §3)',
      {
        'www.example.com': [
          issue(`ca.example.net; accounturi=${OTHER_ACCOUNT}`),
          issue(`ca.example.net; accounturi=${ACCOUNT}`),
        ],
      },
      {},
      'allowed',
    ],
    [
      'validationmethods listing the method (RFC 8657 §4)',
      { 'www.example.com': [issue('ca.example.net; validationmethods=dns-01,http-01')] },
      {},
      'allowed',
    ],
    [
      'validationmethods without the method (RFC 8657 §4)',
      { 'www.example.com': [issue('ca.example.net; validationmethods=dns-01')] },
      {},
      'caa',
    ],
    [
      'an unparsable value grants nothing (§4.2)',
      { 'www.example.com': [issue('ca.example.net; =broken')] },
      {},
      'caa',
    ],
  ])('%s', async (_name, records, check, expected) => {
    expect(await outcome(records as Record<string, CaaRecord[]>, check)).toBe(expected);
  });

  it('names the records, the CA and the request in the refusal', async () => {
    const error = await checkCaa(
      lookup({ 'example.com': [issue('other.example.org')] }),
      ['ca.example.net'],
      {
        name: 'a.b.example.com',
        wildcard: false,
        accountUri: ACCOUNT,
        method: 'dns-01',
      },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AcmeError);
    expect((error as AcmeError).message).toContain('CAA records of example.com');
    expect((error as AcmeError).status).toBe(403);
  });

  it('climbs label by label and stops at the first non-empty set', async () => {
    const asked: string[] = [];
    const found = await relevantCaaSet(
      {
        caa: async (name) => {
          asked.push(name);
          return name === 'example.com' ? [issue('x.example')] : [];
        },
      },
      'a.b.example.com',
    );
    expect(asked).toEqual(['a.b.example.com', 'b.example.com', 'example.com']);
    expect(found.at).toBe('example.com');
  });

  it('parses issuer names and parameters (§4.2)', () => {
    expect(parseCaaValue('ca.example.net; accounturi=https://x/1 ; validationmethods=http-01')).toEqual({
      issuer: 'ca.example.net',
      parameters: new Map([
        ['accounturi', 'https://x/1'],
        ['validationmethods', 'http-01'],
      ]),
    });
    expect(parseCaaValue(';')).toEqual({ issuer: '', parameters: new Map() });
    expect(parseCaaValue('not a name')).toBeUndefined();
  });
});
