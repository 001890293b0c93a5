import { type ChildProcess, spawn } from 'node:child_process';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createServer as createRawServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../bench/support.ts';
import { AcmeError } from '../../src/acme/errors.ts';
import { reverseName } from '../../src/acme/identifiers.ts';
import { createValidationNetwork, type ValidationNetwork } from '../../src/acme/validation/network.ts';
import { createValidationQueue } from '../../src/acme/validation/queue.ts';
import { type ChallengeJob, createChallengeValidator } from '../../src/acme/validation/validator.ts';
import { DEFAULT_ACME_DENY_NETWORKS } from '../../src/config/config.ts';
import {
  type Http01Responder,
  startHttp01Responder,
  startTlsAlpnResponder,
  type TlsAlpnResponder,
  tlsAlpnCertificate,
} from '../helpers/acme-responders.ts';
import { hasTool } from '../helpers/tools.ts';
import { testNetwork } from './helpers.ts';

/**
 * Challenge validation (RFC 8555 §8.3-8.4, RFC 8737, RFC 8738) against real servers on
 * 127.0.0.1: what passes, what fails and with which ACME error, the denied networks (never
 * connected to, nor redirected to), the time bound, and the configurable resolver against
 * pebble-challtestsrv's mock DNS.
 */

const TOKEN = 'tok3n_of-the-challenge_aaaaaaaaaaaaaaaaaaaaaa';
const KEY_AUTHORIZATION = `${TOKEN}.thumbprint_of_the_account_key_aaaaaaaaaaaa`;

async function failure(promise: Promise<unknown>): Promise<{ type: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof AcmeError) return { type: error.type, message: error.message };
    throw error;
  }
  throw new Error('the validation passed');
}

const httpJob = (value = 'www.example.com'): ChallengeJob => ({
  type: 'http-01',
  identifier: { type: 'dns', value },
  token: TOKEN,
  keyAuthorization: KEY_AUTHORIZATION,
});

describe('the denied networks (acme.validation.denyNetworks default)', () => {
  const network = createValidationNetwork({ denyNetworks: DEFAULT_ACME_DENY_NETWORKS });
  it.each([
    ['the cloud metadata address', '169.254.169.254', true],
    ['it written IPv4-mapped', '::ffff:169.254.169.254', true],
    ['link-local IPv4', '169.254.10.20', true],
    ['link-local IPv6', 'fe80::1', true],
    ['AWS metadata over IPv6', 'fd00:ec2::254', true],
    ['Alibaba metadata', '100.100.100.200', true],
    ['Oracle metadata', '192.0.0.192', true],
    ['something that is no address', 'example.com', true],
    ['loopback (a private CA validates internal hosts)', '127.0.0.1', false],
    ['IPv6 loopback', '::1', false],
    ['a private range', '10.1.2.3', false],
    ['another private range', '192.168.1.1', false],
    ['a documentation address', '192.0.2.10', false],
    ['a unique local IPv6 address', 'fd00::1', false],
  ])('%s (%s): denied %s', (_name, address, denied) => {
    expect(network.denied(address)).toBe(denied);
  });

  it('refuses a configuration entry that is no network', () => {
    expect(() => createValidationNetwork({ denyNetworks: ['169.254.0.0/33'] })).toThrow(/denyNetworks/);
    expect(() => createValidationNetwork({ denyNetworks: ['nowhere/8'] })).toThrow(/denyNetworks/);
  });
});

describe('http-01 (RFC 8555 §8.3)', () => {
  let responder: Http01Responder;
  let network: ReturnType<typeof testNetwork>;
  let validator: ReturnType<typeof createChallengeValidator>;

  beforeAll(async () => {
    responder = await startHttp01Responder();
    network = testNetwork();
    validator = createChallengeValidator({
      network: network.network,
      httpPort: responder.port,
      tlsPort: 1,
      timeoutMs: 1500,
    });
  });
  afterAll(async () => {
    await responder.close();
  });

  it('passes when the token path answers the key authorization, sending the name as Host', async () => {
    responder.answers.set(TOKEN, `${KEY_AUTHORIZATION}\r\n\t `);
    await validator.validate(httpJob());
    expect(responder.requests.at(-1)).toEqual({
      path: `/.well-known/acme-challenge/${TOKEN}`,
      host: `www.example.com:${responder.port}`,
    });
  });

  it.each([
    ['another body', 'incorrectResponse', (res) => res.writeHead(200).end('nope')],
    ['a 404', 'unauthorized', (res) => res.writeHead(404).end()],
    [
      'a body far larger than a key authorization',
      'incorrectResponse',
      (res) => res.writeHead(200).end('x'.repeat(20_000)),
    ],
    [
      'a redirect to ftp:',
      'connection',
      (res) => res.writeHead(302, { location: 'ftp://www.example.com/x' }).end(),
    ],
    [
      'a redirect to file:',
      'connection',
      (res) => res.writeHead(301, { location: 'file:///etc/passwd' }).end(),
    ],
    [
      'a redirect to the metadata address',
      'connection',
      (res) => res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end(),
    ],
    [
      'a redirect to a name that resolves into a denied network',
      'connection',
      (res) => res.writeHead(307, { location: 'http://metadata.example.com/' }).end(),
    ],
    ['a redirect without a Location', 'connection', (res) => res.writeHead(302).end()],
  ] as [string, string, (res: import('node:http').ServerResponse) => void][])(
    'fails on %s with %s',
    async (_name, type, answer) => {
      network.addresses.set('metadata.example.com', ['fe80::1', '169.254.169.254']);
      responder.answers.set(TOKEN, answer);
      expect((await failure(validator.validate(httpJob()))).type).toBe(type);
    },
  );

  it('follows redirects on the same server and to an https URL (certificate not checked)', async () => {
    const key = await tlsAlpnCertificate({ type: 'dns', value: 'secure.example.com' }, 'unused');
    const https = createHttpsServer(key, (_req, res) => res.end(KEY_AUTHORIZATION));
    await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
    const httpsPort = (https.address() as AddressInfo).port;
    try {
      responder.answers.set(TOKEN, (res) =>
        res.writeHead(301, { location: '/.well-known/acme-challenge/moved' }).end(),
      );
      responder.answers.set('moved', (res) =>
        res.writeHead(302, { location: `https://secure.example.com:${httpsPort}/final` }).end(),
      );
      await validator.validate(httpJob());
    } finally {
      https.close();
    }
  });

  it('gives up after ten redirects', async () => {
    responder.answers.set(TOKEN, (res) =>
      res.writeHead(302, { location: `/.well-known/acme-challenge/${TOKEN}` }).end(),
    );
    const result = await failure(validator.validate(httpJob()));
    expect(result).toMatchObject({ type: 'connection', message: expect.stringContaining('redirects') });
  });

  it('never connects to a name that resolves only into denied networks', async () => {
    network.addresses.set('link.example.com', ['169.254.1.1']);
    const before = responder.requests.length;
    const result = await failure(validator.validate(httpJob('link.example.com')));
    expect(result).toMatchObject({ type: 'connection', message: expect.stringContaining('denyNetworks') });
    expect(responder.requests.length).toBe(before);
  });

  it('fails with connection when nothing listens, and within the time budget when the server stalls', async () => {
    const closed = await freePort();
    const refused = createChallengeValidator({
      network: network.network,
      httpPort: closed,
      tlsPort: 1,
      timeoutMs: 1500,
    });
    expect((await failure(refused.validate(httpJob()))).type).toBe('connection');
    const sockets: import('node:net').Socket[] = [];
    const stall: Server = createRawServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => stall.listen(0, '127.0.0.1', resolve));
    const stalled = createChallengeValidator({
      network: network.network,
      httpPort: (stall.address() as AddressInfo).port,
      tlsPort: 1,
      timeoutMs: 300,
    });
    const started = Date.now();
    expect(await failure(stalled.validate(httpJob()))).toMatchObject({
      type: 'connection',
      message: expect.stringContaining('within'),
    });
    expect(Date.now() - started).toBeLessThan(2000);
    for (const socket of sockets) socket.destroy();
    stall.close();
  });
});

describe('tls-alpn-01 (RFC 8737, RFC 8738 §6)', () => {
  let responder: TlsAlpnResponder;
  let validator: ReturnType<typeof createChallengeValidator>;
  const job = (identifier: { type: 'dns' | 'ip'; value: string }): ChallengeJob => ({
    type: 'tls-alpn-01',
    identifier,
    token: TOKEN,
    keyAuthorization: KEY_AUTHORIZATION,
  });

  beforeAll(async () => {
    responder = await startTlsAlpnResponder();
    validator = createChallengeValidator({
      network: testNetwork().network,
      httpPort: 1,
      tlsPort: responder.port,
      timeoutMs: 3000,
    });
  });
  afterAll(async () => {
    await responder.close();
  });

  it('passes with the acme-tls/1 certificate for the name, asked for by SNI', async () => {
    responder.set(
      'tls.example.com',
      await tlsAlpnCertificate({ type: 'dns', value: 'tls.example.com' }, KEY_AUTHORIZATION),
    );
    await validator.validate(job({ type: 'dns', value: 'tls.example.com' }));
    expect(responder.servernames.at(-1)).toBe('tls.example.com');
  });

  it('passes for an IP identifier, whose SNI is the reverse-mapping name', async () => {
    expect(reverseName('127.0.0.1')).toBe('1.0.0.127.in-addr.arpa');
    expect(reverseName('2001:db8::1')).toBe(
      '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa',
    );
    responder.set(
      '1.0.0.127.in-addr.arpa',
      await tlsAlpnCertificate({ type: 'ip', value: '127.0.0.1' }, KEY_AUTHORIZATION),
    );
    await validator.validate(job({ type: 'ip', value: '127.0.0.1' }));
    expect(responder.servernames.at(-1)).toBe('1.0.0.127.in-addr.arpa');
  });

  it.each([
    ['another digest', { digest: new Uint8Array(32) }],
    ['a non-critical acmeIdentifier', { nonCritical: true }],
    ['no acmeIdentifier', { omitExtension: true }],
    ['a second name', { extraSans: [{ type: 'dns' as const, value: 'other.example.com' }] }],
  ])('fails on a certificate with %s (incorrectResponse)', async (_name, variant) => {
    responder.set(
      'bent.example.com',
      await tlsAlpnCertificate({ type: 'dns', value: 'bent.example.com' }, KEY_AUTHORIZATION, variant),
    );
    expect((await failure(validator.validate(job({ type: 'dns', value: 'bent.example.com' })))).type).toBe(
      'incorrectResponse',
    );
  });

  it('fails on a certificate for another name (incorrectResponse)', async () => {
    responder.set(
      'asked.example.com',
      await tlsAlpnCertificate({ type: 'dns', value: 'given.example.com' }, KEY_AUTHORIZATION),
    );
    expect((await failure(validator.validate(job({ type: 'dns', value: 'asked.example.com' })))).type).toBe(
      'incorrectResponse',
    );
  });

  it('fails with tls on a server that does not speak acme-tls/1', async () => {
    const plain = await startTlsAlpnResponder('127.0.0.1', 0, ['http/1.1']);
    try {
      const other = createChallengeValidator({
        network: testNetwork().network,
        httpPort: 1,
        tlsPort: plain.port,
        timeoutMs: 3000,
      });
      expect((await failure(other.validate(job({ type: 'dns', value: 'tls.example.com' })))).type).toBe(
        'tls',
      );
    } finally {
      await plain.close();
    }
  });
});

const haveChalltestsrv = hasTool('pebble-challtestsrv', ['-h']);

describe.skipIf(!haveChalltestsrv)(
  'dns-01 and name resolution through the configured resolver (pebble-challtestsrv)',
  () => {
    let child: ChildProcess;
    let dnsPort: number;
    let managementPort: number;
    let network: ValidationNetwork;
    let validator: ReturnType<typeof createChallengeValidator>;
    const manage = (path: string, body: unknown) =>
      fetch(`http://127.0.0.1:${managementPort}${path}`, { method: 'POST', body: JSON.stringify(body) });

    beforeAll(async () => {
      dnsPort = await freePort();
      managementPort = await freePort();
      child = spawn(
        'pebble-challtestsrv',
        [
          '-defaultIPv6',
          '',
          '-dns01',
          `127.0.0.1:${dnsPort}`,
          '-management',
          `127.0.0.1:${managementPort}`,
        ].concat(['-http01', '', '-https01', '', '-tlsalpn01', '']),
        { stdio: 'ignore' },
      );
      for (let i = 0; i < 100; i++) {
        try {
          await manage('/clear-txt', { host: 'warmup.example.com.' });
          break;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
      network = createValidationNetwork({
        dnsServers: [`127.0.0.1:${dnsPort}`],
        denyNetworks: DEFAULT_ACME_DENY_NETWORKS,
      });
      validator = createChallengeValidator({ network, httpPort: 1, tlsPort: 1, timeoutMs: 5000 });
    });
    afterAll(() => {
      child?.kill();
    });

    it('resolves names through the configured server (its default answer, no AAAA)', async () => {
      expect(await network.addresses('anything.example.com')).toEqual(['127.0.0.1']);
      await manage('/add-a', { host: 'mapped.example.com.', addresses: ['192.0.2.7'] });
      expect(await network.addresses('mapped.example.com')).toEqual(['192.0.2.7']);
    });

    it('passes dns-01 when _acme-challenge carries the digest', async () => {
      const { createHash } = await import('node:crypto');
      const value = createHash('sha256').update(KEY_AUTHORIZATION).digest('base64url');
      await manage('/set-txt', { host: '_acme-challenge.dns.example.com.', value });
      await validator.validate({
        type: 'dns-01',
        identifier: { type: 'dns', value: 'dns.example.com' },
        token: TOKEN,
        keyAuthorization: KEY_AUTHORIZATION,
      });
    });

    it('fails dns-01 with incorrectResponse on another value and with dns on no record', async () => {
      await manage('/set-txt', { host: '_acme-challenge.wrong.example.com.', value: 'not-the-digest' });
      const job = (value: string): ChallengeJob => ({
        type: 'dns-01',
        identifier: { type: 'dns', value },
        token: TOKEN,
        keyAuthorization: KEY_AUTHORIZATION,
      });
      expect((await failure(validator.validate(job('wrong.example.com')))).type).toBe('incorrectResponse');
      expect((await failure(validator.validate(job('absent.example.com')))).type).toBe('dns');
    });

    it('reads CAA records through the configured server (RFC 8659) and refuses a CA they do not name', async () => {
      await manage('/add-caa', {
        host: 'caa.example.com.',
        policies: [{ tag: 'issue', value: 'other.example.org' }],
      });
      expect(await network.caa('caa.example.com')).toEqual([
        { critical: 0, tag: 'issue', value: 'other.example.org' },
      ]);
      expect(await network.caa('nocaa.example.com')).toEqual([]);
      const withCaa = createChallengeValidator({
        network,
        httpPort: 1,
        tlsPort: 1,
        timeoutMs: 5000,
        caaIdentities: ['ca.example.net'],
      });
      const { createHash } = await import('node:crypto');
      const value = createHash('sha256').update(KEY_AUTHORIZATION).digest('base64url');
      await manage('/set-txt', { host: '_acme-challenge.www.caa.example.com.', value });
      const error = await failure(
        withCaa.validate({
          type: 'dns-01',
          identifier: { type: 'dns', value: 'www.caa.example.com' },
          token: TOKEN,
          keyAuthorization: KEY_AUTHORIZATION,
          accountUri: 'https://ca.example.net/acme/dev/account/a',
        }),
      );
      expect(error.type).toBe('caa');
    });

    it('fails with dns when the configured server does not answer', async () => {
      const silent = createValidationNetwork({
        dnsServers: [`127.0.0.1:${await freePort()}`],
        denyNetworks: [],
        queryTimeoutMs: 200,
      });
      expect((await failure(silent.addresses('www.example.com'))).type).toBe('dns');
    });
  },
);

describe('the validation queue', () => {
  it('runs at most `concurrency` validations at once, each challenge once, and refuses beyond its size', async () => {
    let running = 0;
    let peak = 0;
    const seen: string[] = [];
    const queue = createValidationQueue({
      concurrency: 3,
      maxQueued: 17,
      run: async (id) => {
        seen.push(id);
        running++;
        peak = Math.max(peak, running);
        await new Promise((resolve) => setTimeout(resolve, 10));
        running--;
      },
    });
    // Three start at once; seventeen wait, which fills the queue.
    for (let i = 0; i < 20; i++) expect(queue.enqueue(`c${i}`)).toBe(true);
    expect(queue.enqueue('c5')).toBe(true);
    expect(queue.enqueue('c20')).toBe(false);
    await queue.idle();
    expect(peak).toBe(3);
    expect(seen.sort()).toEqual([...Array(20).keys()].map((i) => `c${i}`).sort());
    await queue.close();
    expect(queue.enqueue('late')).toBe(false);
  });
});
