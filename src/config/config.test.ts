import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from './config.ts';

const minimal = `
partitions:
  issuing: { dir: hsm/issuing, socket: hsm/issuing.sock, pinFile: secrets/pin-issuing-ca }
trustedRoots: [certs/dev-root.pem]
`;

describe('the service configuration', () => {
  it('fills every default from a minimal file', () => {
    const config = parseConfig(minimal);
    expect(config.server).toMatchObject({ host: '127.0.0.1', port: 8080, bodyLimit: 65536 });
    expect(config.partitions.issuing?.user).toBe('ca');
    expect(config.crl.debounce).toBe('PT5S');
    expect(config.crl.importedExpiryWarning).toBe('P30D');
    expect(config.policies.dir).toBe('policies');
    expect(config.partitions.issuing?.p11Socket).toBeUndefined();
    expect(config.rateLimit.failedAuthPerMinute).toBe(60);
    expect(config.audit.failedAuthInterval).toBe('PT1M');
  });

  it('reads the failed-authentication limits (issue #19)', () => {
    const config = parseConfig(
      `${minimal}\nrateLimit: { failedAuthPerMinute: 5 }\naudit: { failedAuthInterval: PT10M }\n`,
    );
    expect(config.rateLimit).toEqual({ perMinute: 6000, failedAuthPerMinute: 5 });
    expect(config.audit.failedAuthInterval).toBe('PT10M');
  });

  it('takes a PKCS#11 socket for a partition it starts, with its group and user', () => {
    const config = parseConfig(
      'partitions:\n  issuing: { dir: d, socket: s, pinFile: p, p11Socket: hsm/p11.sock, p11SocketGroup: www-data, p11User: web }\ntrustedRoots: [r]\n',
    );
    expect(config.partitions.issuing).toMatchObject({
      p11Socket: 'hsm/p11.sock',
      p11SocketGroup: 'www-data',
      p11User: 'web',
    });
  });

  it.each([
    ['an unknown top-level key', `${minimal}\nsurprise: 1\n`, /surprise|Unrecognized key/],
    ['an unknown nested key', `${minimal}\nserver: { prot: 1 }\n`, /server: .*prot/],
    ['a port of the wrong type', `${minimal}\nserver: { port: "80a" }\n`, /server\.port/],
    [
      'a malformed duration',
      `${minimal}\ncrl: { debounce: 5s }\n`,
      /crl\.debounce: must be an ISO 8601 duration/,
    ],
    [
      'a failed-authentication limit of zero',
      `${minimal}\nrateLimit: { failedAuthPerMinute: 0 }\n`,
      /rateLimit\.failedAuthPerMinute/,
    ],
    [
      'a failed-authentication interval that is no duration',
      `${minimal}\naudit: { failedAuthInterval: 1m }\n`,
      /audit\.failedAuthInterval: must be an ISO 8601 duration/,
    ],
    [
      'a warning margin in months, whose length is not fixed',
      `${minimal}\ncrl: { importedExpiryWarning: P1M }\n`,
      /crl\.importedExpiryWarning: must be a duration of days/,
    ],
    ['a missing trust anchor list', 'partitions: {}\n', /trustedRoots/],
    ['duplicate keys', `${minimal}\nlog: { level: info }\nlog: { level: warn }\n`, /not valid YAML/],
    [
      'a PKCS#11 socket on a partition signet serve does not start',
      'partitions:\n  issuing: { dir: d, socket: s, pinFile: p, spawn: false, p11Socket: p11.sock }\ntrustedRoots: [r]\n',
      /partitions\.issuing\.p11Socket: .*spawn: true/,
    ],
    [
      'a PKCS#11 user without its socket',
      'partitions:\n  issuing: { dir: d, socket: s, pinFile: p, p11User: web }\ntrustedRoots: [r]\n',
      /partitions\.issuing\.p11Socket: p11SocketGroup and p11User need p11Socket/,
    ],
  ])('refuses %s and names the path', (_name, text, pattern) => {
    expect(() => parseConfig(text)).toThrow(ConfigError);
    expect(() => parseConfig(text)).toThrow(pattern);
  });
});
