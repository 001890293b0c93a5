import { promises as dns } from 'node:dns';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { acmeError } from '../errors.ts';
import type { CaaRecord } from './caa.ts';

/**
 * What validation needs of the network: addresses and TXT records of a name through the
 * configured resolver (acme.validation.dnsResolver, else the system's), and the networks it must
 * never connect to (acme.validation.denyNetworks). Addresses are resolved once and connected to
 * directly, so a second lookup cannot point a connection somewhere the check did not see.
 */
export interface ValidationNetwork {
  /** IPv6 addresses first, then IPv4 (RFC 8555 §8.3 leaves the order; Let's Encrypt prefers IPv6). */
  addresses(name: string): Promise<string[]>;
  /** TXT records of `name`, each with its character-strings joined (RFC 7208 §3.3 style). */
  txt(name: string): Promise<string[]>;
  /** CAA records at exactly `name` (RFC 8659); [] when there are none. */
  caa(name: string): Promise<CaaRecord[]>;
  /** Whether `address` lies in a denied network (IPv4-mapped IPv6 is checked as IPv4). */
  denied(address: string): boolean;
}

export interface ValidationNetworkOptions {
  /** `host`, `host:port`, `[v6]:port`; absent: the system resolver (hosts file, resolv.conf). */
  dnsServers?: string[];
  denyNetworks: string[];
  /** Per query try. */
  queryTimeoutMs?: number;
}

const NOT_FOUND = new Set(['ENODATA', 'ENOTFOUND', 'NXDOMAIN', 'ENONAME']);

export function createValidationNetwork(options: ValidationNetworkOptions): ValidationNetwork {
  const blocked = new BlockList();
  for (const network of options.denyNetworks) {
    const [address = '', prefix = ''] = network.split('/');
    const type = isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : undefined;
    const bits = Number(prefix);
    if (!type || !Number.isInteger(bits) || bits < 0 || bits > (type === 'ipv4' ? 32 : 128)) {
      throw new Error(`acme.validation.denyNetworks: ${network} is not a network in CIDR notation`);
    }
    blocked.addSubnet(address, bits, type);
  }
  const timeout = options.queryTimeoutMs ?? 3000;
  const resolver = new dns.Resolver({ timeout, tries: 2 });
  // setServers throws on a malformed address: a configuration mistake stops the start.
  if (options.dnsServers?.length) resolver.setServers(options.dnsServers);
  const custom = Boolean(options.dnsServers?.length);

  async function query<T>(what: string, name: string, run: () => Promise<T[]>): Promise<T[]> {
    try {
      return await run();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? '';
      if (NOT_FOUND.has(code)) return [];
      throw acmeError('dns', `the ${what} lookup of ${name} failed (${code || 'error'})`, { cause: error });
    }
  }

  return {
    async addresses(name) {
      let found: string[];
      if (custom) {
        const [v6, v4] = await Promise.all([
          query('AAAA', name, () => resolver.resolve6(name)),
          query('A', name, () => resolver.resolve4(name)),
        ]);
        found = [...v6, ...v4];
      } else {
        const all = await query('address', name, () => dns.lookup(name, { all: true, verbatim: true }));
        found = [...all.filter((a) => a.family === 6), ...all.filter((a) => a.family === 4)].map(
          (a) => a.address,
        );
      }
      if (found.length === 0) throw acmeError('dns', `${name} has no A or AAAA record`);
      return found;
    },

    async txt(name) {
      const records = await query('TXT', name, () => resolver.resolveTxt(name));
      return records.map((chunks) => chunks.join(''));
    },

    async caa(name) {
      const records = await query('CAA', name, () => resolver.resolveCaa(name));
      return records.map((record) => {
        const { critical, ...properties } = record as unknown as Record<string, string | number>;
        const [tag = '', value = ''] = Object.entries(properties)[0] ?? [];
        return { critical: Number(critical), tag, value: String(value) };
      });
    },

    denied(address) {
      const bare = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
      const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare);
      if (mapped) return blocked.check(mapped[1]!, 'ipv4');
      if (isIPv4(bare)) return blocked.check(bare, 'ipv4');
      if (isIPv6(bare)) return blocked.check(bare, 'ipv6');
      // Not an address at all: never connect to it.
      return true;
    },
  };
}

/** The addresses a validation may connect to, or a `connection` error naming the denied ones. */
export function allowedAddresses(network: ValidationNetwork, host: string, addresses: string[]): string[] {
  const allowed = addresses.filter((address) => !network.denied(address));
  if (allowed.length === 0) {
    throw acmeError(
      'connection',
      `${host} resolves only to ${addresses.join(', ')}, in networks this CA never connects to (acme.validation.denyNetworks)`,
    );
  }
  return allowed;
}
