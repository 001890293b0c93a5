import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { hasTool } from '../helpers/tools.ts';
import { policyYaml } from './builders.ts';
import { createCsrFactory } from './openssl-csr.ts';

const signet = (args: string[]) =>
  spawnSync(process.execPath, ['bin/signet.js', 'policy', ...args], { encoding: 'utf8', timeout: 30_000 });

describe('signet policy lint', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'signet-policy-cli-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('accepts the shipped policies and exits 0', () => {
    const result = signet(['lint']);
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain('3 policies valid: client-mtls, spiffe-workload, web-server');
    expect(result.status).toBe(0);
  });

  test('names the file, line and key of each problem and exits 1', () => {
    writeFileSync(join(dir, 'good.yaml'), policyYaml());
    writeFileSync(
      join(dir, 'bad.yaml'),
      `${policyYaml({ sans: { ip: { allow: ['::/0'] } } })}ocsp_must_stapel: true\n`,
    );
    const result = signet(['lint', dir]);
    expect(result.status).toBe(1);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toContainEqual(
      expect.stringMatching(
        /bad\.yaml:\d+ ocsp_must_stapel: unknown key; did you mean 'ocsp_must_staple'\?$/,
      ),
    );
    expect(result.stderr).toContain('2 problems');
  });

  test('checks a single file', () => {
    const result = signet(['lint', 'policies/spiffe-workload.yaml']);
    expect(result.stdout).toContain('1 policy valid: spiffe-workload');
    expect(result.status).toBe(0);
  });

  test('exits 1 for a folder that does not exist', () => {
    const result = signet(['lint', join(dir, 'missing')]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('cannot read the policy folder (ENOENT)');
  });
});

describe.skipIf(!hasTool('openssl', ['version']))('signet policy check', () => {
  let csrs: ReturnType<typeof createCsrFactory>;
  let good: string;
  let bad: string;
  beforeAll(() => {
    csrs = createCsrFactory();
    good = csrs.writePem(
      csrs.make({
        subject: '/CN=www.example.com',
        addext: ['subjectAltName=DNS:www.example.com,IP:192.0.2.7'],
      }),
      'good.csr',
    );
    bad = csrs.writePem(
      csrs.make({
        subject: '/CN=www.example.com',
        addext: ['subjectAltName=DNS:www.example.com,DNS:example.com.evil.net'],
      }),
      'bad.csr',
    );
  });
  afterAll(() => csrs.cleanup());

  test('lists how each name was decided, with the rule and its line, and exits 0 for an issuable CSR', () => {
    const result = signet(['check', '--policy', 'web-server', '--csr', good]);
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(
      /allowed\s+sans\[0\]\s+www\.example\.com\s+sans\.dns\.allow\.subdomains_of\[0\] \(web-server\.yaml:\d+\)/,
    );
    expect(result.stdout).toMatch(
      /allowed\s+sans\[1\]\s+192\.0\.2\.7\s+sans\.ip\.allow\[0\] \(web-server\.yaml:\d+\)/,
    );
    expect(result.stdout).toContain('would issue: issuer dev-intermediate');
  });

  test('lists the violations and exits 1 for a CSR the policy refuses', () => {
    const result = signet(['check', '--policy', 'web-server', '--csr', bad]);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/refused\s+sans\[1\]\s+example\.com\.evil\.net\s+sans\.dns\.allow/);
    expect(result.stdout).toMatch(/policy\.dns_not_allowed\s+sans\[1\]/);
  });

  test('prints the evaluation as JSON on request', () => {
    const result = signet(['check', '--policy', 'web-server', '--csr', bad, '--json']);
    expect(result.status).toBe(1);
    const evaluation = JSON.parse(result.stdout);
    expect(evaluation).toMatchObject({ allowed: false, policy: 'web-server', requester: 'cli' });
    expect(evaluation.violations).toEqual([
      expect.objectContaining({ code: 'policy.dns_not_allowed', field: 'sans[1]' }),
    ]);
  });

  test('applies --san and --validity as request overrides', () => {
    const result = signet([
      'check',
      '--policy',
      'web-server',
      '--csr',
      bad,
      '--san',
      'dns:www.example.com',
      '--validity',
      'P7D',
      '--json',
    ]);
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout).template).toMatchObject({
      sans: [{ type: 'dns', value: 'www.example.com' }],
      validitySeconds: 604_800,
    });
  });

  test.each([
    ['an unknown policy', ['--policy', 'nope', '--csr', 'x.csr'], "no policy named 'nope'"],
    ['no --policy', ['--csr', 'x.csr'], '--policy NAME is required'],
    ['no --csr', ['--policy', 'web-server'], '--csr FILE is required'],
    [
      'a malformed --san',
      ['--policy', 'web-server', '--csr', 'x.csr', '--san', 'www.example.com'],
      '--san takes TYPE:VALUE',
    ],
    ['an unknown option', ['--policy', 'web-server', '--bogus'], 'bogus'],
  ])('exits 2 for %s', (_name, args, message) => {
    const result = signet(['check', ...args]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(message);
  });

  test('exits 1 with the CSR error code for a file that is not a CSR', () => {
    const file = join(tmpdir(), `signet-not-a-csr-${process.pid}.pem`);
    writeFileSync(file, '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n');
    const result = signet(['check', '--policy', 'web-server', '--csr', file]);
    rmSync(file, { force: true });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/the CSR is refused: .*\[csr\.[a-z_]+\]/);
  });
});

/**
 * Issue #33: `signet policy check` read ./policies while the server reads the data folder's
 * policies.dir. Without a folder argument, lint and check now read the server's.
 */
describe.skipIf(!hasTool('openssl', ['version']))('signet policy in a data folder', () => {
  let dir: string;
  let dataDir: string;
  let csrs: ReturnType<typeof createCsrFactory>;
  let csr: string;
  const inData = (args: string[], env: Record<string, string> = {}) => {
    const { SIGNET_DATA: _unset, ...rest } = process.env;
    return spawnSync(process.execPath, ['bin/signet.js', 'policy', ...args], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...rest, ...env },
    });
  };
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'signet-policy-data-'));
    dataDir = join(dir, 'data');
    mkdirSync(join(dataDir, 'site-policies'), { recursive: true });
    writeFileSync(
      join(dataDir, 'signet.yaml'),
      'partitions: {}\ntrustedRoots: [certs/root.pem]\npolicies: { dir: site-policies }\n',
    );
    writeFileSync(join(dataDir, 'site-policies', 'intranet.yaml'), policyYaml());
    csrs = createCsrFactory();
    csr = csrs.writePem(
      csrs.make({ subject: '/CN=www.example.com', addext: ['subjectAltName=DNS:www.example.com'] }),
      'intranet.csr',
    );
  });
  afterAll(() => {
    csrs.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  test.each([
    ['SIGNET_DATA', [], { SIGNET_DATA: '{data}' }],
    ['--data', ['--data', '{data}'], {}],
  ])('lints the folder signet.yaml names, found by %s', (_how, extra, env) => {
    const fill = (text: string) => text.replace('{data}', dataDir);
    const result = inData(
      ['lint', ...(extra as string[]).map(fill)],
      Object.fromEntries(Object.entries(env).map(([k, v]) => [k, fill(v)])),
    );
    expect(result.stdout).toBe(`1 policy valid: intranet (${join(dataDir, 'site-policies')})\n`);
    expect(result.status).toBe(0);
  });

  test('checks a CSR against a policy of the data folder, not of ./policies', () => {
    const ours = inData(['check', '--policy', 'intranet', '--csr', csr], { SIGNET_DATA: dataDir });
    expect(ours.stdout).toContain(`policy intranet (${join(dataDir, 'site-policies', 'intranet.yaml')})`);
    expect(ours.status).toBe(0);
    const shipped = inData(['check', '--policy', 'web-server', '--csr', csr], { SIGNET_DATA: dataDir });
    expect(shipped.status).toBe(2);
    expect(shipped.stderr).toContain(`no policy named 'web-server' in ${join(dataDir, 'site-policies')}`);
  });
});
