import { describe, expect, it } from 'vitest';
import { addressKey } from '../../src/api/client-address.ts';

describe('the key a client address is limited under', () => {
  it.each([
    { name: 'an IPv4 address', address: '192.0.2.1', key: '192.0.2.1' },
    { name: 'an IPv4-mapped IPv6 address', address: '::ffff:192.0.2.1', key: '192.0.2.1' },
    { name: 'a full IPv6 address', address: '2001:db8:1:2:3:4:5:6', key: '2001:db8:1:2::/64' },
    { name: 'another address of that /64', address: '2001:db8:1:2::ffff', key: '2001:db8:1:2::/64' },
    { name: 'a compressed IPv6 address', address: '2001:db8::1', key: '2001:db8:0:0::/64' },
    { name: 'an upper-case IPv6 address', address: '2001:DB8:A::1', key: '2001:db8:a:0::/64' },
    { name: 'a link-local address with a zone', address: 'fe80::1%eth0', key: 'fe80:0:0:0::/64' },
    { name: 'IPv6 loopback', address: '::1', key: '0:0:0:0::/64' },
    {
      name: 'an IPv6 address ending in a dotted quad',
      address: '64:ff9b::192.0.2.1',
      key: '64:ff9b:0:0::/64',
    },
    { name: 'no address', address: undefined, key: 'unknown' },
    { name: 'an empty address', address: '', key: 'unknown' },
    { name: 'something that is no address', address: 'not-an-address', key: 'unknown' },
  ])('maps $name to $key', ({ address, key }) => {
    expect(addressKey(address)).toBe(key);
  });
});
