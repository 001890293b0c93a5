import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { initDataDir } from '../../src/cli/init.ts';
import { serveDataDir } from '../../src/cli/serve.ts';
import { EXAMPLES, openssl, pinFiles, signet, tempDir } from '../ceremony/helpers.ts';
import { hasTool } from '../helpers/tools.ts';
import { crlPem } from '../revocation/helpers/pki.ts';

/**
 * Issue #13 end to end: the example root, key and intermediate ceremonies, then the online side
 * (`signet issuer add`, `signet issue`) issues a leaf that openssl accepts with the ceremony's
 * root as the only trust anchor, and still accepts checking revocation along the whole chain once
 * the ceremony's root CRL is imported (issue #18); a name outside the intermediate's constraints
 * is refused.
 */
const haveOpenssl = hasTool('openssl', ['version']);

describe.skipIf(!haveOpenssl)('a ceremony-made intermediate activated online', () => {
  let dir: string;
  let data: string;
  const at = (name: string) => join(dir, name);

  beforeAll(async () => {
    dir = tempDir('ceremony-online');
    data = at('data');
    await initDataDir({ dataDir: data, port: 8080, publicUrl: 'http://127.0.0.1:8080' });
    // The key ceremony's example names its online partition `issuing-partition`: that is ours.
    symlinkSync(join(data, 'hsm', 'issuing'), at('issuing-partition'));
  }, 120_000);

  it('runs the root, key and intermediate ceremonies from the example files', () => {
    const pins = pinFiles(dir);
    const root = signet([
      'ceremony',
      'run',
      join(EXAMPLES, 'root.yaml'),
      '--output-dir',
      dir,
      '--allow-network',
      '--officer-pin-file',
      pins.officer,
      '--pin-file',
      pins.user,
    ]);
    expect(root.output).toContain('Ceremony completed');
    const key = signet([
      'ceremony',
      'run',
      join(EXAMPLES, 'key.yaml'),
      '--output-dir',
      dir,
      '--allow-network',
      '--officer-pin-file',
      join(data, 'secrets', 'offline', 'pin-issuing-officer'),
      '--pin-file',
      join(data, 'secrets', 'pin-issuing-ca'),
      '--secret-file',
      join(data, 'secrets', 'unseal-issuing'),
    ]);
    expect(key.output).toContain('KEY URI: hsm:partition=issuing;label=example-intermediate-2026');
    const intermediate = signet([
      'ceremony',
      'run',
      join(EXAMPLES, 'intermediate.yaml'),
      '--output-dir',
      dir,
      '--allow-network',
      '--pin-file',
      pins.user,
      '--share-file',
      at('shares/carol.share'),
      '--share-file',
      at('shares/erin.share'),
    ]);
    expect(intermediate.output).toContain('Ceremony completed');
  }, 120_000);

  it('refuses to activate the intermediate while its root is not a trusted root of signet.yaml', () => {
    const add = signet([
      'issuer',
      'add',
      '--data',
      data,
      '--id',
      'example-intermediate',
      '--certificate',
      at('intermediate.pem'),
      '--key',
      'hsm:partition=issuing;label=example-intermediate-2026',
    ]);
    expect(add.status).toBe(1);
    expect(add.stderr).toContain('refused');
  });

  it('refuses to activate it against another key of the partition', () => {
    const config = parse(readFileSync(join(data, 'signet.yaml'), 'utf8'));
    config.trustedRoots.push(at('root.pem'));
    writeFileSync(join(data, 'signet.yaml'), stringify(config));
    const add = signet([
      'issuer',
      'add',
      '--data',
      data,
      '--id',
      'example-intermediate',
      '--certificate',
      at('intermediate.pem'),
      '--key',
      'hsm:partition=issuing;label=dev-intermediate',
    ]);
    expect(add.status).toBe(1);
    expect(add.stderr).toMatch(/refused: .*key/i);
  });

  it('activates it, issues a leaf under it that openssl verifies with the ceremony root as the only anchor', () => {
    const add = signet([
      'issuer',
      'add',
      '--data',
      data,
      '--id',
      'example-intermediate',
      '--certificate',
      at('intermediate.pem'),
      '--key',
      'hsm:partition=issuing;label=example-intermediate-2026',
    ]);
    expect(add.stdout).toContain('issuer example-intermediate is active');
    expect(add.status).toBe(0);

    // A policy for the new issuer, which also allows the name the intermediate excludes, so that
    // the CA's lint (the issuer's name constraints) is what refuses it below.
    const policy = parse(readFileSync(join(data, 'policies', 'web-server.yaml'), 'utf8'));
    policy.issuer = 'example-intermediate';
    policy.description = 'web servers under the ceremony intermediate';
    writeFileSync(join(data, 'policies', 'ceremony-web.yaml'), stringify(policy));

    openssl([
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      at('leaf.key'),
      '-subj',
      '/CN=www.example.com',
      '-addext',
      'subjectAltName=DNS:www.example.com',
      '-out',
      at('leaf.csr'),
    ]);
    const issue = signet([
      'issue',
      '--data',
      data,
      '--csr',
      at('leaf.csr'),
      '--policy',
      'ceremony-web',
      '--out',
      at('leaf-chain.pem'),
    ]);
    expect(issue.status).toBe(0);
    const blocks = readFileSync(at('leaf-chain.pem'), 'utf8').split(/(?=-----BEGIN CERTIFICATE-----)/);
    writeFileSync(at('leaf.pem'), blocks[0]!);
    writeFileSync(at('leaf-intermediates.pem'), blocks.slice(1).join(''));
    const verify = openssl([
      'verify',
      '-x509_strict',
      '-purpose',
      'sslserver',
      '-CAfile',
      at('root.pem'),
      '-untrusted',
      at('leaf-intermediates.pem'),
      at('leaf.pem'),
    ]);
    expect(verify.output).toContain('leaf.pem: OK');
    // Not the dev root: the ceremony's root is the anchor.
    const wrongAnchor = openssl([
      'verify',
      '-CAfile',
      join(data, 'certs', 'dev-root.pem'),
      '-untrusted',
      at('leaf-intermediates.pem'),
      at('leaf.pem'),
    ]);
    expect(wrongAnchor.status).not.toBe(0);
  }, 120_000);

  it("imports the ceremony's root CRL; with it and the intermediate's CRL the online CA serves, openssl -crl_check_all accepts the leaf", async () => {
    // The root's CRL, made by the crl ceremony from the example with today's dates (an import must
    // be current) and revoking nothing: this root's first CRL.
    const config = parse(readFileSync(join(EXAMPLES, 'crl.yaml'), 'utf8'));
    const now = Math.floor(Date.now() / 1000) * 1000;
    const iso = (ms: number) => new Date(ms).toISOString().replace('.000Z', 'Z');
    config['crl-profile'] = {
      'this-update': iso(now - 60_000),
      'next-update': iso(now + 365 * 86_400_000),
      number: 1,
    };
    config.outputs['crl-path'] = 'root-current.crl';
    config.transcript.path = 'transcripts/crl-current.json';
    writeFileSync(at('crl-current.yaml'), stringify(config));
    const ceremony = signet([
      'ceremony',
      'run',
      at('crl-current.yaml'),
      '--output-dir',
      dir,
      '--allow-network',
      '--pin-file',
      pinFiles(dir).user,
      '--share-file',
      at('shares/carol.share'),
      '--share-file',
      at('shares/erin.share'),
    ]);
    expect(ceremony.output).toContain('Ceremony completed');

    const issuers = JSON.parse(signet(['issuer', 'list', '--data', data, '--json']).stdout) as {
      id: string;
      name: string;
    }[];
    const rootId = issuers.find((issuer) => issuer.name === 'Example Root CA R1')!.id;
    const imported = signet(['crl', 'import', '--data', data, '--issuer', rootId, at('root-current.crl')]);
    expect(imported.stderr).toBe('');
    expect(JSON.parse(imported.stdout)).toMatchObject({ issuer: rootId, crlNumber: '1' });

    // What the online CA serves: the imported root CRL as it is, and its own CRL of the intermediate.
    process.env.SIGNET_LOG_LEVEL = 'silent';
    const serving = await serveDataDir({ dataDir: data, port: 0 });
    try {
      await serving.runtime.revocation!.scheduler.idle();
      for (const [id, file] of [
        [rootId, 'root-served.crl'],
        ['example-intermediate', 'intermediate-served.crl'],
      ] as const) {
        const response = await fetch(`${serving.server.url}/crl/${id}.crl`);
        expect(response.status).toBe(200);
        writeFileSync(at(file), Buffer.from(await response.arrayBuffer()));
      }
    } finally {
      await serving.stop();
    }
    const pem = (file: string) => crlPem(new Uint8Array(readFileSync(at(file))));
    writeFileSync(at('root-served.pem'), pem('root-served.crl'));
    writeFileSync(at('intermediate-served.pem'), pem('intermediate-served.crl'));
    const served = openssl(['crl', '-in', at('root-served.pem'), '-outform', 'PEM']);
    expect(served.output).toBe(readFileSync(at('root-current.crl'), 'utf8'));

    const verify = openssl([
      'verify',
      '-crl_check_all',
      '-x509_strict',
      '-CAfile',
      at('root.pem'),
      '-untrusted',
      at('leaf-intermediates.pem'),
      '-CRLfile',
      at('root-served.pem'),
      '-CRLfile',
      at('intermediate-served.pem'),
      at('leaf.pem'),
    ]);
    expect(verify.output).toContain('leaf.pem: OK');
    expect(verify.status).toBe(0);
  }, 180_000);

  it('refuses a name the intermediate excludes through the lint, before any signature', () => {
    openssl([
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      at('bad.key'),
      '-subj',
      '/CN=forbidden.example.com',
      '-addext',
      'subjectAltName=DNS:forbidden.example.com',
      '-out',
      at('bad.csr'),
    ]);
    const before = readFileSync(join(data, 'hsm', 'issuing', 'audit.log'), 'utf8').split('\n').length;
    const issue = signet(['issue', '--data', data, '--csr', at('bad.csr'), '--policy', 'ceremony-web']);
    expect(issue.status).toBe(1);
    expect(issue.stderr).toContain('ca.lint_failed');
    expect(issue.stderr).toMatch(/name.?constraint/i);
    const log = readFileSync(join(data, 'hsm', 'issuing', 'audit.log'), 'utf8').split('\n');
    const signed = log
      .slice(before - 1)
      .filter((line) => line.includes('"purpose":"certificate"') && line.includes('"op":"sign"'));
    expect(signed).toEqual([]);
  }, 60_000);
});
