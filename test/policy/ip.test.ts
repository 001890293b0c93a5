import { BlockList, isIP } from 'node:net';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { cidrContains, formatCidr, formatIp, parseCidr, parseIp } from '../../src/policy/ip.ts';

describe('parseIp and formatIp', () => {
  test.each([
    ['192.0.2.1', '192.0.2.1'],
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    ['2001:db8::1', '2001:db8::1'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['::', '::'],
    ['::1', '::1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // RFC 5952 §4.2.2: a single zero group stays
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // §4.2.3: the longest run is compressed
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // §4.2.3: the first of equal runs
    ['::ffff:192.0.2.1', '::ffff:192.0.2.1'], // §5: IPv4-mapped keeps the dotted form
    ['::FFFF:c000:0201', '::ffff:192.0.2.1'],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
  ])('reads %s and writes it as %s', (text, canonical) => {
    const parsed = parseIp(text);
    expect(parsed.ok).toBe(true);
    if (parsed.ok) expect(formatIp(parsed.address)).toBe(canonical);
  });

  test.each([
    ['an empty string', '', 'empty'],
    ['three parts', '192.0.2', 'four dotted'],
    ['a part over 255', '192.0.2.256', 'greater than 255'],
    ['a leading zero (octal to some parsers)', '192.0.2.010', 'leading zero'],
    ['a hex IPv4 part', '0xc0.0.2.1', 'not part of an IP address'],
    ['a zone identifier', 'fe80::1%eth0', 'zone'],
    ['brackets', '[2001:db8::1]', 'brackets'],
    ['two ::', '2001::db8::1', 'only once'],
    ['nine groups', '1:2:3:4:5:6:7:8:9', 'eight groups'],
    ['a five-digit group', '2001:db8::12345', 'one to four hex digits'],
    ['an IPv4 part in the middle', '::192.0.2.1:1', 'must come last'],
    ['a :: that stands for nothing', '1:2:3:4::5:6:7:8', 'at least one zero group'],
    ['a DNS name', 'example.com', 'not part of an IP address'],
    ['white space', ' 192.0.2.1', 'not part of an IP address'],
  ])('refuses %s', (_name, text, reason) => {
    const parsed = parseIp(text);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.reason).toContain(reason);
  });

  test('agrees with node:net on which strings are addresses and writes what it reads', () => {
    const v6 = fc
      .array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 })
      .map((groups) => groups.map((g) => g.toString(16)).join(':'));
    const v4 = fc
      .array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 })
      .map((b) => b.join('.'));
    fc.assert(
      fc.property(fc.oneof(v4, v6), (text) => {
        const parsed = parseIp(text);
        expect(parsed.ok).toBe(true);
        if (!parsed.ok) return;
        const canonical = formatIp(parsed.address);
        expect(isIP(canonical)).toBe(parsed.address.version);
        const again = parseIp(canonical);
        expect(again.ok && Buffer.from(again.address.bytes).equals(Buffer.from(parsed.address.bytes))).toBe(
          true,
        );
      }),
    );
  });
});

describe('CIDR blocks', () => {
  test.each([
    ['192.0.2.0/24', '192.0.2.0/24'],
    ['2001:db8::/32', '2001:db8::/32'],
    ['192.0.2.7', '192.0.2.7/32'],
    ['2001:db8::1', '2001:db8::1/128'],
    ['0.0.0.0/0', '0.0.0.0/0'],
  ])('reads %s as %s', (text, canonical) => {
    const parsed = parseCidr(text);
    expect(parsed.ok && formatCidr(parsed.cidr)).toBe(canonical);
  });

  test.each([
    ['host bits set', '192.0.2.1/24', 'did you mean 192.0.2.0/24'],
    ['a prefix over 32', '192.0.2.0/33', 'from 0 to 32'],
    ['a prefix over 128', '2001:db8::/129', 'from 0 to 128'],
    ['a prefix with a leading zero', '192.0.2.0/024', 'from 0 to 32'],
    ['an IPv4-mapped block', '::ffff:192.0.2.0/120', 'write IPv4 blocks as IPv4'],
    ['a bad address', '192.0.2/24', 'four dotted'],
  ])('refuses %s', (_name, text, reason) => {
    const parsed = parseCidr(text);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.reason).toContain(reason);
  });

  test.each([
    ['192.0.2.0/24', '192.0.2.200', true],
    ['192.0.2.0/24', '192.0.3.1', false],
    ['192.0.2.0/24', '::ffff:192.0.2.9', true], // IPv4-mapped IPv6 is compared as IPv4
    ['192.0.2.0/24', '::ffff:198.51.100.1', false],
    ['192.0.2.0/24', '::c000:209', false], // IPv4-compatible is not IPv4-mapped
    ['2001:db8::/32', '2001:db8:ffff::1', true],
    ['2001:db8::/32', '2001:db9::1', false],
    ['2001:db8::/32', '192.0.2.1', false],
    ['192.0.2.128/25', '192.0.2.127', false],
    ['192.0.2.128/25', '192.0.2.128', true],
  ])('%s holds %s: %s', (block, address, expected) => {
    const cidr = parseCidr(block);
    const ip = parseIp(address);
    expect(cidr.ok && ip.ok && cidrContains(cidr.cidr, ip.address)).toBe(expected);
  });

  test('matches exactly what node:net BlockList matches', () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.integer({ min: 0, max: 128 }),
        (v4, networkBytes, addressBytes, rawPrefix) => {
          const size = v4 ? 4 : 16;
          const prefix = rawPrefix % (size * 8 + 1);
          const version = v4 ? 4 : 6;
          const network = formatIp({ version, bytes: networkBytes.slice(0, size) });
          const address = formatIp({ version, bytes: addressBytes.slice(0, size) });
          const block = parseCidr(`${network}/${prefix}`);
          // Random network bytes usually have host bits set; use the block the parser suggests.
          const cidr = block.ok ? block.cidr : parseCidrLoose(network, prefix, version);
          const list = new BlockList();
          list.addSubnet(formatIp({ version, bytes: cidr.bytes }), prefix, v4 ? 'ipv4' : 'ipv6');
          const ip = parseIp(address);
          if (!ip.ok) throw new Error(ip.reason);
          if (address.startsWith('::ffff:')) return; // BlockList does not unmap; covered above
          expect(cidrContains(cidr, ip.address)).toBe(list.check(address, v4 ? 'ipv4' : 'ipv6'));
        },
      ),
    );
  });
});

function parseCidrLoose(network: string, prefix: number, version: 4 | 6) {
  const parsed = parseIp(network);
  if (!parsed.ok) throw new Error(parsed.reason);
  const bytes = parsed.address.bytes.map(
    (byte, i) => byte & (0xff << (8 - Math.max(0, Math.min(8, prefix - 8 * i)))) & 0xff,
  );
  return { version, bytes, prefix };
}
