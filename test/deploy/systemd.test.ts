import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasTool } from '../helpers/tools.ts';

/**
 * Issue #33 "Running it as a service": the systemd units in deploy/systemd/ (the CA, and a
 * partition under its own OS user) pass `systemd-analyze verify` with no warning, and their
 * hardening holds (`systemd-analyze security --offline`). verify needs each ExecStart program to
 * exist, so it checks copies whose ExecStart names this checkout's bin/signet.js instead of
 * /opt/signet. Debian's `systemd` package provides systemd-analyze; .ci/run installs it. The
 * units' command lines are run for real in test/slow/systemd-units.test.ts.
 */
const UNITS = path.resolve('deploy/systemd');
const INSTALLED = '/opt/signet/node_modules/.bin/signet';
const CHECKOUT_BIN = path.resolve('bin/signet.js');
const haveTool = hasTool('systemd-analyze', ['--version']);

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'signet-systemd-'));
  for (const file of readdirSync(UNITS).filter((f) => f.endsWith('.service'))) {
    const text = readFileSync(path.join(UNITS, file), 'utf8');
    expect(text).toContain(`ExecStart=${INSTALLED} `);
    writeFileSync(
      path.join(dir, file),
      text.replaceAll(`ExecStart=${INSTALLED} `, `ExecStart=${CHECKOUT_BIN} `),
    );
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** systemd-analyze with the copies first on the unit path (the trailing ':' keeps the defaults). */
const analyze = (args: string[]) =>
  spawnSync('systemd-analyze', args, {
    cwd: dir,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, SYSTEMD_UNIT_PATH: `${dir}:`, SYSTEMD_LOG_COLOR: '0' },
  });

const directives = (unit: string) =>
  new Map(
    readFileSync(path.join(UNITS, unit), 'utf8')
      .split('\n')
      .filter((line) => /^[A-Z][A-Za-z]+=/.test(line))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)] as const),
  );

describe('the units', () => {
  it.each([['signet.service'], ['signet-hsm@.service'], ['signet-renew@.service']])(
    '%s is hardened',
    (unit) => {
      const d = directives(unit);
      for (const [key, value] of [
        ['ProtectSystem', 'strict'],
        ['NoNewPrivileges', 'yes'],
        ['PrivateTmp', 'yes'],
        ['ProtectHome', 'yes'],
        ['CapabilityBoundingSet', ''],
        ['UMask', '0077'],
      ])
        expect(d.get(key!), key).toBe(value);
      expect(d.get('ReadWritePaths')).toMatch(/^\/var\/lib\/signet/);
      expect(d.get('User')).toMatch(/^signet/);
    },
  );

  it('run the partition as another user than the CA, whose group alone reaches its socket', () => {
    const ca = directives('signet.service');
    const partition = directives('signet-hsm@.service');
    expect(partition.get('User')).not.toBe(ca.get('User'));
    expect(partition.get('ExecStart')).toContain('--socket-group signet-hsm-clients');
    expect(ca.get('SupplementaryGroups')).toBe('signet-hsm-clients');
    expect(ca.get('ExecStart')).toBe(`${INSTALLED} serve --data /var/lib/signet`);
    // The renewal daemon keeps a certificate renewed with its own key: no API key, no data folder.
    expect(directives('signet-renew@.service').get('ExecStart')).toBe(
      `${INSTALLED} certificate renew --daemon --cert /var/lib/signet-certs/%i.pem --key /var/lib/signet-certs/%i.key --url \${SIGNET_URL}`,
    );
    // The partition needs no network: only its Unix sockets.
    expect(partition.get('RestrictAddressFamilies')).toBe('AF_UNIX');
    expect(partition.get('PrivateNetwork')).toBe('yes');
  });
});

describe.skipIf(!haveTool)('systemd-analyze', () => {
  it.each([['signet.service'], ['signet-hsm@issuing.service'], ['signet-renew@www.example.com.service']])(
    'verify %s: no error, no warning',
    (unit) => {
      const result = analyze(['verify', unit]);
      expect(`${result.stdout}${result.stderr}`).toBe('');
      expect(result.status).toBe(0);
    },
  );

  it('verify refuses a copy with a mistake, so the check above can fail', () => {
    const text = readFileSync(path.join(dir, 'signet.service'), 'utf8');
    writeFileSync(
      path.join(dir, 'broken.service'),
      text.replace('ProtectSystem=strict', 'ProtectSystem=strikt'),
    );
    const result = analyze(['verify', 'broken.service']);
    expect(result.stderr).toContain('Failed to parse protect system value');
  });

  it.each([
    ['signet.service', 2.0],
    ['signet-hsm@issuing.service', 1.0],
    ['signet-renew@www.example.com.service', 2.0],
  ])('security --offline rates %s at an exposure of at most %s', (unit, most) => {
    const result = analyze(['security', '--offline=yes', '--no-pager', unit]);
    const exposure = Number(/Overall exposure level for \S+: ([0-9.]+)/.exec(result.stdout)?.[1]);
    expect(exposure, result.stdout + result.stderr).toBeLessThanOrEqual(most);
  });
});
