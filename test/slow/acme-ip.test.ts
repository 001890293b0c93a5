import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasTool } from '../helpers/tools.ts';

/**
 * IP identifiers (RFC 8738) end to end. lego 4.9 cannot order them (it sends addresses as DNS
 * names), so hand-made JWS requests do, validating on 192.0.2.10, 192.0.2.20 and 2001:db8::10 put on `lo`
 * inside a private network namespace (`unshare -rn`: no host address is touched). The flow runs
 * in fixtures/acme-ip-flow.ts inside the namespace; this file checks its report and verifies
 * each chain with openssl against the dev root.
 */
const haveTools =
  hasTool('unshare', ['--version']) && hasTool('ip', ['-V']) && hasTool('openssl', ['version']);
const FIXTURE = fileURLToPath(new URL('./fixtures/acme-ip-flow.ts', import.meta.url));

let dir: string;
// biome-ignore lint/suspicious/noExplicitAny: the fixture's JSON report, read field by field
let report: Record<string, any>;

function verify(name: string): string {
  const result = spawnSync(
    'openssl',
    [
      'verify',
      '-purpose',
      'sslserver',
      '-CAfile',
      path.join(dir, 'root.pem'),
      '-untrusted',
      path.join(dir, `${name}.pem`),
      path.join(dir, `${name}.pem`),
    ],
    { encoding: 'utf8' },
  );
  return `${result.stdout}${result.stderr}`;
}

describe.skipIf(!haveTools)('IP identifiers (RFC 8738) in a private network namespace', () => {
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-acme-ip-'));
    const { stdout } = await promisify(execFile)(
      'unshare',
      ['-rn', process.execPath, '--import', 'tsx', FIXTURE, dir],
      {
        timeout: 240_000,
        maxBuffer: 1 << 20,
      },
    );
    report = JSON.parse(stdout.trim().split('\n').at(-1)!);
  }, 300_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('offers an IP identifier http-01 and tls-alpn-01, never dns-01', () => {
    expect(report['ipv4-http'].offered).toEqual(['http-01', 'tls-alpn-01']);
  });

  it('validates 192.0.2.10 with http-01 (Host is the address) and issues a certificate for it', () => {
    expect(report['ipv4-http']).toMatchObject({
      challenge: 'valid',
      order: 'valid',
      subjectAltName: 'IP Address:192.0.2.10',
    });
    expect(report['ipv4-http'].host).toMatch(/^192\.0\.2\.10:\d+$/);
    expect(verify('ipv4-http')).toContain(': OK');
  });

  it('validates 192.0.2.20 with tls-alpn-01, asked for by its reverse name', () => {
    expect(report['ipv4-tls']).toMatchObject({
      challenge: 'valid',
      order: 'valid',
      sni: '20.2.0.192.in-addr.arpa',
      subjectAltName: 'IP Address:192.0.2.20',
    });
    expect(verify('ipv4-tls')).toContain(': OK');
  });

  it('validates 2001:db8::10 with http-01 over IPv6', () => {
    expect(report['ipv6-http']).toMatchObject({
      challenge: 'valid',
      order: 'valid',
      subjectAltName: 'IP Address:2001:DB8:0:0:0:0:0:10',
    });
    expect(report['ipv6-http'].host).toMatch(/^\[2001:db8::10\]:\d+$/);
    expect(verify('ipv6-http')).toContain(': OK');
  });

  it('fails with connection for an address nothing answers on', () => {
    expect(report.unreachable).toMatchObject({
      challenge: 'invalid',
      error: 'urn:ietf:params:acme:error:connection',
    });
  });
});
