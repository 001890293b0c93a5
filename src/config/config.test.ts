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
    expect(config.crl.debounce).toBe('PT0.1S');
    expect(config.crl.importedExpiryWarning).toBe('P30D');
    expect(config.policies.dir).toBe('policies');
    expect(config.partitions.issuing?.p11Socket).toBeUndefined();
    expect(config.rateLimit.failedAuthPerMinute).toBe(60);
    expect(config.audit.failedAuthInterval).toBe('PT1M');
  });

  it('reads CRL shards per issuer, a delta interval and a debounce with a fraction of a second', () => {
    const { crl } = parseConfig(
      `${minimal}\ncrl: { debounce: PT0.25S, shards: { dev-intermediate: 8 }, deltaInterval: PT1H }\n`,
    );
    expect(crl).toMatchObject({
      debounce: 'PT0.25S',
      shards: { 'dev-intermediate': 8 },
      deltaInterval: 'PT1H',
    });
    expect(parseConfig(minimal).crl.shards).toEqual({});
    expect(parseConfig(minimal).crl.deltaInterval).toBeUndefined();
  });

  it('has no ACME directory by default, and validation defaults that suit a CA on a network', () => {
    const { acme } = parseConfig(minimal);
    expect(acme.directories).toEqual([]);
    expect(acme.validation).toMatchObject({ httpPort: 80, tlsPort: 443, timeout: 'PT10S', concurrency: 16 });
    expect(acme.validation.dnsResolver).toBeUndefined();
    expect(acme.validation.denyNetworks).toEqual(
      expect.arrayContaining(['169.254.0.0/16', 'fe80::/10', '169.254.169.254/32', 'fd00:ec2::254/128']),
    );
    expect(acme).toMatchObject({
      nonceLifetime: 'PT10M',
      orderLifetime: 'P7D',
      authorizationLifetime: 'P30D',
    });
  });

  it('reads ACME directories, challenge ports and the resolver (issue #30)', () => {
    const { acme } = parseConfig(
      `${minimal}\nacme:\n  directories: [{ name: dev, policy: web-server }, { name: dns-only, policy: web-server, challenges: [dns-01] }]\n  validation: { httpPort: 5002, tlsPort: 5001, dnsResolver: '127.0.0.1:8053' }\n`,
    );
    expect(acme.directories).toEqual([
      {
        name: 'dev',
        policy: 'web-server',
        challenges: ['http-01', 'dns-01', 'tls-alpn-01'],
        eab: 'optional',
        profiles: [],
      },
      { name: 'dns-only', policy: 'web-server', challenges: ['dns-01'], eab: 'optional', profiles: [] },
    ]);
    expect(acme.validation).toMatchObject({ httpPort: 5002, tlsPort: 5001, dnsResolver: '127.0.0.1:8053' });
  });

  it('reads EAB, profiles, CAA identities and alternate chains (issue #31)', () => {
    const { acme } = parseConfig(
      `${minimal}\nacme:\n  directories: [{ name: private, policy: web-server, eab: required, profiles: [short-lived] }]\n  caaIdentities: [ca.example.net]\n  alternateChains: [certs/cross.pem]\n`,
    );
    expect(acme.directories[0]).toMatchObject({ eab: 'required', profiles: ['short-lived'] });
    expect(acme).toMatchObject({
      caaIdentities: ['ca.example.net'],
      alternateChains: ['certs/cross.pem'],
      eabKey: 'hsm:partition=issuing;label=acme-eab',
    });
    expect(() =>
      parseConfig(`${minimal}\nacme:\n  directories: [{ name: d, policy: p, eab: sometimes }]\n`),
    ).toThrow(/eab/);
    expect(() => parseConfig(`${minimal}\nacme:\n  caaIdentities: ['not a name']\n`)).toThrow(
      /caaIdentities/,
    );
  });

  it('reads the failed-authentication limits (issue #19)', () => {
    const config = parseConfig(
      `${minimal}\nrateLimit: { failedAuthPerMinute: 5 }\naudit: { failedAuthInterval: PT10M }\n`,
    );
    expect(config.rateLimit).toEqual({ perMinute: 6000, failedAuthPerMinute: 5 });
    expect(config.audit.failedAuthInterval).toBe('PT10M');
  });

  it('reads certificates.renewGrace as an ISO 8601 duration, PT0S by default (issue #32)', () => {
    expect(parseConfig(minimal).certificates.renewGrace).toBe('PT0S');
    expect(parseConfig(`${minimal}\ncertificates: { renewGrace: P7D }\n`).certificates.renewGrace).toBe(
      'P7D',
    );
    for (const wrong of ['7d', 'P1M', '-P1D']) {
      expect(() => parseConfig(`${minimal}\ncertificates: { renewGrace: ${wrong} }\n`)).toThrow(
        /certificates\.renewGrace/,
      );
    }
    expect(() => parseConfig(`${minimal}\ncertificates: { renewGrce: P1D }\n`)).toThrow(ConfigError);
  });

  it('reads the single socket/dir form as a one-member list (issue #22)', () => {
    const issuing = parseConfig(minimal).partitions.issuing!;
    expect(issuing.members).toEqual([{ dir: 'hsm/issuing', socket: 'hsm/issuing.sock', spawn: true }]);
    expect(issuing.spawn).toBe(true);
    const apart = parseConfig(
      'partitions:\n  issuing: { dir: d, socket: s, pinFile: p, spawn: false }\ntrustedRoots: [r]\n',
    ).partitions.issuing!;
    expect(apart.members).toEqual([{ dir: 'd', socket: 's', spawn: false }]);
    expect(apart.spawn).toBe(false);
  });

  it('reads members: one spawned that also listens, one on a socket, one over mutual TLS (issue #22)', () => {
    const issuing = parseConfig(`partitions:
  issuing:
    pinFile: p
    members:
      - { dir: hsm/issuing, socket: hsm/issuing.sock, spawn: true, url: 'tls://127.0.0.1:7001', cert: c.crt, key: c.key, ca: ca.crt, listen: { cert: s.crt, key: s.key, clientCa: ca.crt } }
      - { socket: /run/signet-hsm/issuing-2.sock }
      - { url: 'tls://[2001:db8::7]:7001', cert: c.crt, key: c.key, ca: ca.crt }
trustedRoots: [r]
`).partitions.issuing!;
    expect(issuing.members).toHaveLength(3);
    expect(issuing.members[0]).toMatchObject({ spawn: true, listen: { clientCa: 'ca.crt' } });
    expect(issuing.members[1]).toEqual({ socket: '/run/signet-hsm/issuing-2.sock', spawn: false });
    expect(issuing.members[2]).toMatchObject({ url: 'tls://[2001:db8::7]:7001', spawn: false });
    expect(issuing.spawn).toBe(true);
    expect(issuing.quorum).toBeUndefined();
  });

  it('takes the quorum of a cluster whose spawned member listens (issue #23)', () => {
    const issuing = parseConfig(`partitions:
  issuing:
    pinFile: p
    quorum: 3
    members:
      - { dir: d, socket: s, spawn: true, url: 'tls://127.0.0.1:7001', cert: c, key: k, ca: a, listen: { cert: s.crt, key: s.key, clientCa: a } }
trustedRoots: [r]
`).partitions.issuing!;
    expect(issuing.quorum).toBe(3);
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
      'a delta interval over half of the CRL validity',
      `${minimal}\ncrl: { validity: P1D, deltaInterval: PT13H }\n`,
      /crl\.deltaInterval: must be at least PT1S and at most half of crl\.validity/,
    ],
    [
      'a shard count of zero',
      `${minimal}\ncrl: { shards: { dev-intermediate: 0 } }\n`,
      /crl\.shards\.dev-intermediate/,
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
    [
      'an ACME directory name that is no path segment',
      `${minimal}\nacme: { directories: [{ name: 'a/b', policy: web-server }] }\n`,
      /acme\.directories\.0\.name/,
    ],
    [
      'two ACME directories of one name',
      `${minimal}\nacme: { directories: [{ name: dev, policy: a }, { name: dev, policy: b }] }\n`,
      /acme\.directories: two directories have the same name/,
    ],
    [
      'an unknown challenge type',
      `${minimal}\nacme: { directories: [{ name: dev, policy: a, challenges: [tls-sni-01] }] }\n`,
      /acme\.directories\.0\.challenges/,
    ],
    [
      'a resolver that is no address',
      `${minimal}\nacme: { validation: { dnsResolver: 'dns.example.com' } }\n`,
      /acme\.validation\.dnsResolver/,
    ],
    [
      'a denied network without a prefix',
      `${minimal}\nacme: { validation: { denyNetworks: ['169.254.169.254'] } }\n`,
      /acme\.validation\.denyNetworks/,
    ],
    ['an ACME order lifetime in months', `${minimal}\nacme: { orderLifetime: P1M }\n`, /acme\.orderLifetime/],
    ['duplicate keys', `${minimal}\nlog: { level: info }\nlog: { level: warn }\n`, /not valid YAML/],
    [
      'a PKCS#11 socket on a partition signet serve does not start',
      'partitions:\n  issuing: { dir: d, socket: s, pinFile: p, spawn: false, p11Socket: p11.sock }\ntrustedRoots: [r]\n',
      /partitions\.issuing\.p11Socket: .*spawn: true/,
    ],
    [
      'a quorum for a partition with no listening member it starts',
      'partitions:\n  issuing: { dir: d, socket: s, pinFile: p, quorum: 2 }\ntrustedRoots: [r]\n',
      /partitions\.issuing\.quorum: quorum applies to a cluster member signet serve starts/,
    ],
    [
      'a PKCS#11 user without its socket',
      'partitions:\n  issuing: { dir: d, socket: s, pinFile: p, p11User: web }\ntrustedRoots: [r]\n',
      /partitions\.issuing\.p11Socket: p11SocketGroup and p11User need p11Socket/,
    ],
    [
      'members beside the single-member socket',
      'partitions:\n  issuing: { socket: s, pinFile: p, members: [{ socket: t }] }\ntrustedRoots: [r]\n',
      /partitions\.issuing\.socket: give either members or the single-member/,
    ],
    [
      'a partition with neither socket nor members',
      'partitions:\n  issuing: { dir: d, pinFile: p }\ntrustedRoots: [r]\n',
      /partitions\.issuing\.socket: socket is required \(or list members\)/,
    ],
    [
      'two spawned members',
      'partitions:\n  issuing: { pinFile: p, members: [{ socket: a, dir: a, spawn: true }, { socket: b, dir: b, spawn: true }] }\ntrustedRoots: [r]\n',
      /partitions\.issuing\.members: at most one member is spawned/,
    ],
    [
      'a member over TLS without its client certificate',
      "partitions:\n  issuing: { pinFile: p, members: [{ url: 'tls://127.0.0.1:7001', ca: ca.crt }] }\ntrustedRoots: [r]\n",
      /partitions\.issuing\.members\.0: a member reached at url needs cert, key and ca/,
    ],
    [
      'a member address that is not tls://',
      "partitions:\n  issuing: { pinFile: p, members: [{ url: 'https://127.0.0.1:7001', cert: c, key: k, ca: a }] }\ntrustedRoots: [r]\n",
      /partitions\.issuing\.members\.0\.url: must be tls:\/\/HOST:PORT/,
    ],
    [
      'a member with neither socket nor url',
      'partitions:\n  issuing: { pinFile: p, members: [{ spawn: false }] }\ntrustedRoots: [r]\n',
      /a member needs socket: PATH or url/,
    ],
    [
      'a spawned member without its folder',
      'partitions:\n  issuing: { pinFile: p, members: [{ socket: s, spawn: true }] }\ntrustedRoots: [r]\n',
      /a spawned member needs dir and socket/,
    ],
    [
      'listen on a member this node does not start',
      "partitions:\n  issuing: { pinFile: p, members: [{ url: 'tls://127.0.0.1:1', cert: c, key: k, ca: a, listen: { cert: c, key: k, clientCa: a } }] }\ntrustedRoots: [r]\n",
      /listen applies to the spawned member/,
    ],
  ])('refuses %s and names the path', (_name, text, pattern) => {
    expect(() => parseConfig(text)).toThrow(ConfigError);
    expect(() => parseConfig(text)).toThrow(pattern);
  });
});
