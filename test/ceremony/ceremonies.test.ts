import { createHash, webcrypto } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from '@peculiar/x509';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { runCeremony } from '../../src/ceremony/run.ts';
import { verifyTranscript } from '../../src/ceremony/transcript-signature.ts';
import { validateCeremony } from '../../src/ceremony/validate.ts';
import { createIntermediateCertificate, createRootCertificate } from '../../src/issuance/ca-certificates.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { createIssuerContext } from '../../src/x509/issuer.ts';
import { hasTool } from '../helpers/tools.ts';
import {
  createOnlinePartition,
  EXAMPLES,
  OFFICER_PIN,
  openssl,
  pinFiles,
  servePartition,
  signet,
  signLeaf,
  tempDir,
  USER_PIN,
} from './helpers.ts';

const haveOpenssl = hasTool('openssl', ['version']);
/** A fixed instant inside every validity period of the examples, so the test never depends on today. */
const AT = String(Date.parse('2026-06-15T00:00:00Z') / 1000);
const AFTER_CRL = String(Date.parse('2027-06-01T00:00:00Z') / 1000);

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

function treeHashes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      if (statSync(path).isDirectory()) walk(path);
      else out[path] = sha256(path);
    }
  };
  walk(dir);
  return out;
}

describe.skipIf(!haveOpenssl)('the root, key, intermediate and CRL ceremonies from the example files', () => {
  let dir: string;
  let pins: { officer: string; user: string };
  let issuingSecret: string;
  const out = (name: string) => join(dir, name);

  beforeAll(async () => {
    dir = tempDir('ceremony');
    pins = pinFiles(dir);
    issuingSecret = join(dir, 'issuing.secret');
    await createOnlinePartition(out('issuing-partition'), 'issuing', issuingSecret);
  });

  it('validate lists what the root ceremony will write and touches nothing', () => {
    const check = signet(['ceremony', 'validate', join(EXAMPLES, 'root.yaml'), '--output-dir', dir]);
    expect(check.status).toBe(0);
    expect(check.stdout).toContain('a valid root ceremony');
    expect(check.stdout).toContain('shares/carol.share  (offline-partition.create.custodians.0.share-path)');
    expect(existsSync(out('root-partition'))).toBe(false);
  });

  it('the root ceremony creates the offline partition with one share file per custodian and a self-signed root', () => {
    const run = signet([
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
    expect(run.output).toContain('Ceremony completed');
    expect(run.status).toBe(0);
    // Each step announces itself before it runs.
    expect(run.stdout).toMatch(/\[1\] Create partition 'root' .* \.\.\./);
    for (const share of ['carol', 'dave', 'erin']) {
      expect(statSync(out(`shares/${share}.share`)).mode & 0o777).toBe(0o600);
    }
    expect(new Set(['carol', 'dave', 'erin'].map((s) => sha256(out(`shares/${s}.share`)))).size).toBe(3);
    const root = openssl(['x509', '-in', out('root.pem'), '-noout', '-text']);
    expect(root.output).toContain('Not Before: Jan  1 00:00:00 2026 GMT');
    expect(root.output).toContain('Not After : Jan  1 00:00:00 2046 GMT');
    expect(root.output).toMatch(/Key Usage: critical\s+Digital Signature, Certificate Sign, CRL Sign/);
    expect(openssl(['verify', '-attime', AT, '-CAfile', out('root.pem'), out('root.pem')]).status).toBe(0);
    const transcript = JSON.parse(readFileSync(out('transcripts/root.json'), 'utf8'));
    expect(transcript.custodians[0]).toMatchObject({ partition: 'root', threshold: 2, shares: 3 });
    expect(transcript.custodians[0].created.map((c: { custodian: string }) => c.custodian)).toEqual([
      'Carol Example',
      'Dave Example',
      'Erin Example',
    ]);
    expect(transcript.keys[0]).toMatchObject({
      role: 'root',
      uri: 'hsm:partition=root;label=example-root-r1',
      created: true,
    });
    expect(transcript.network.allowed).toBe(true);
    expect(transcript.lint[0]).toMatchObject({ subject: 'root.pem', passed: true });
  });

  it('the key ceremony creates the intermediate key in the online partition and prints its URI and public key', () => {
    const run = signet([
      'ceremony',
      'run',
      join(EXAMPLES, 'key.yaml'),
      '--output-dir',
      dir,
      '--allow-network',
      '--officer-pin-file',
      pins.officer,
      '--pin-file',
      pins.user,
      '--secret-file',
      issuingSecret,
    ]);
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('KEY URI: hsm:partition=issuing;label=example-intermediate-2026');
    expect(run.stdout).toContain(readFileSync(out('intermediate-pub.pem'), 'utf8').trim());
  });

  it('refuses to create a key whose label already exists, and writes no output', async () => {
    const config = parse(readFileSync(join(EXAMPLES, 'key.yaml'), 'utf8'));
    config.outputs['public-key-path'] = 'again-pub.pem';
    config.transcript.path = 'transcripts/key-again.json';
    const validated = await validateCeremony({
      text: stringify(config),
      file: 'key-again.yaml',
      baseDir: dir,
    });
    await expect(
      runCeremony(validated, {
        secrets: { officerPin: OFFICER_PIN, userPin: USER_PIN, secret: readFileSync(issuingSecret) },
        allowNetwork: true,
        log: () => {},
      }),
    ).rejects.toMatchObject({ code: 'ceremony.key_exists' });
    expect(existsSync(out('again-pub.pem'))).toBe(false);
    expect(existsSync(out('transcripts/key-again.json'))).toBe(false);
    // The failed attempt is recorded beside the configured transcript path.
    expect(readdirSync(out('transcripts')).some((f) => /^key-again\.failed-.*\.json$/.test(f))).toBe(true);
  });

  it('the intermediate ceremony, unsealed with two of three shares, signs an intermediate that openssl verifies with the root as the only anchor', () => {
    const run = signet([
      'ceremony',
      'run',
      join(EXAMPLES, 'intermediate.yaml'),
      '--output-dir',
      dir,
      '--allow-network',
      '--pin-file',
      pins.user,
      '--share-file',
      out('shares/dave.share'),
      '--share-file',
      out('shares/erin.share'),
    ]);
    expect(run.output).toContain('Ceremony completed');
    expect(run.status).toBe(0);
    const verify = openssl([
      'verify',
      '-attime',
      AT,
      '-x509_strict',
      '-CAfile',
      out('root.pem'),
      out('intermediate.pem'),
    ]);
    expect(verify.output).toContain('intermediate.pem: OK');
    const text = openssl(['x509', '-in', out('intermediate.pem'), '-noout', '-text']).output;
    expect(text).toContain('CA:TRUE, pathlen:0');
    expect(text).toContain('Excluded:');
    expect(text).toContain('Policy: 1.3.6.1.4.1.32473.1.1');
    const transcript = JSON.parse(readFileSync(out('transcripts/intermediate.json'), 'utf8'));
    expect(transcript.custodians[0]).toMatchObject({ partition: 'root', threshold: 2, shares: 3 });
    expect(transcript.custodians[0].used.map((u: { index: number }) => u.index)).toEqual([2, 3]);
  });

  it('a leaf signed with the intermediate key through the partition verifies with the root as the only anchor', async () => {
    const served = await servePartition(out('issuing-partition'), 'issuing', {
      secret: readFileSync(issuingSecret),
    });
    try {
      const leaf = await signLeaf({
        intermediatePem: readFileSync(out('intermediate.pem'), 'utf8'),
        keys: served.client,
        keyLabel: 'example-intermediate-2026',
        sans: [{ type: 'dns', value: 'www.example.com' }],
      });
      writeFileSync(out('leaf.pem'), leaf.pem);
      const verify = openssl([
        'verify',
        '-attime',
        AT,
        '-x509_strict',
        '-CAfile',
        out('root.pem'),
        '-untrusted',
        out('intermediate.pem'),
        '-purpose',
        'sslserver',
        out('leaf.pem'),
      ]);
      expect(verify.output).toContain('leaf.pem: OK');
    } finally {
      await served.stop();
    }
  });

  it('a leaf outside the name constraints is refused by the lint and by openssl', async () => {
    const served = await servePartition(out('issuing-partition'), 'issuing', {
      secret: readFileSync(issuingSecret),
    });
    try {
      for (const [name, value] of [
        ['outside', 'www.example.net'],
        ['excluded', 'forbidden.example.com'],
      ] as const) {
        const leaf = await signLeaf({
          intermediatePem: readFileSync(out('intermediate.pem'), 'utf8'),
          keys: served.client,
          keyLabel: 'example-intermediate-2026',
          sans: [{ type: 'dns', value }],
          skipLint: true,
        });
        expect(leaf.findings.filter((f) => f.severity === 'error').map((f) => f.rule)).toContain(
          'name-constraints',
        );
        writeFileSync(out(`leaf-${name}.pem`), leaf.pem);
        const verify = openssl([
          'verify',
          '-attime',
          AT,
          '-CAfile',
          out('root.pem'),
          '-untrusted',
          out('intermediate.pem'),
          out(`leaf-${name}.pem`),
        ]);
        expect(verify.status).not.toBe(0);
        expect(verify.output).toMatch(
          name === 'outside' ? /permitted subtree violation/ : /excluded subtree violation/,
        );
      }
    } finally {
      await served.stop();
    }
  });

  it('the cross-certificate ceremony certifies another root so that its hierarchy chains to this root', async () => {
    // The other root (R2) and a CA under it, with fixed dates, from src/x509's CA builders and Node keys.
    const clock = fixedClock('2026-03-01T00:00:00Z');
    const r2 = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
      'sign',
      'verify',
    ])) as webcrypto.CryptoKeyPair;
    const r2Cert = await createRootCertificate({
      id: 'r2',
      crypto: webcrypto,
      signingKey: r2.privateKey,
      publicKey: r2.publicKey,
      subject: [
        { type: 'O', value: 'Example Inc.' },
        { type: 'CN', value: 'Example Root CA R2' },
      ],
      clock,
      validitySeconds: 10 * 365 * 86_400,
    });
    writeFileSync(out('root-r2.pem'), r2Cert.pem);
    const subKeys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
      'sign',
      'verify',
    ])) as webcrypto.CryptoKeyPair;
    const sub = await createIntermediateCertificate({
      issuer: createIssuerContext({ id: 'r2', certificate: r2Cert.der }),
      crypto: webcrypto,
      signingKey: r2.privateKey,
      publicKey: subKeys.publicKey,
      subject: [{ type: 'CN', value: 'Example R2 Issuing CA' }],
      clock,
      validitySeconds: 365 * 86_400,
    });
    writeFileSync(out('r2-issuing.pem'), sub.pem);

    const validated = await validateCeremony({
      text: readFileSync(join(EXAMPLES, 'cross-certificate.yaml')),
      file: 'cross-certificate.yaml',
      baseDir: dir,
    });
    await runCeremony(validated, {
      secrets: {
        userPin: USER_PIN,
        shares: ['carol', 'dave'].map((c) => ({ source: c, bytes: readFileSync(out(`shares/${c}.share`)) })),
      },
      allowNetwork: true,
      log: () => {},
    });
    const cross = new X509Certificate(readFileSync(out('root-r2-cross.pem')));
    const r2Parsed = new X509Certificate(r2Cert.pem);
    expect(cross.subject).toBe(r2Parsed.subject);
    expect(Buffer.from(cross.publicKey.rawData).equals(Buffer.from(r2Parsed.publicKey.rawData))).toBe(true);
    const verify = openssl([
      'verify',
      '-attime',
      AT,
      '-CAfile',
      out('root.pem'),
      '-untrusted',
      out('root-r2-cross.pem'),
      out('r2-issuing.pem'),
    ]);
    expect(verify.output).toContain('r2-issuing.pem: OK');
    // Without the cross-certificate, R1 alone does not anchor R2's hierarchy.
    expect(
      openssl(['verify', '-attime', AT, '-CAfile', out('root.pem'), out('r2-issuing.pem')]).status,
    ).not.toBe(0);
  });

  it('refuses to run again over its outputs, before any partition is touched', () => {
    const before = treeHashes(out('root-partition'));
    const run = signet([
      'ceremony',
      'run',
      join(EXAMPLES, 'intermediate.yaml'),
      '--output-dir',
      dir,
      '--allow-network',
      '--pin-file',
      pins.user,
      '--share-file',
      out('shares/dave.share'),
      '--share-file',
      out('shares/erin.share'),
    ]);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(
      'outputs.certificate-path: intermediate.pem exists; outputs are never overwritten',
    );
    expect(run.stderr).toContain('nothing was touched');
    expect(treeHashes(out('root-partition'))).toEqual(before);
  });

  it('the yearly CRL ceremony cannot unseal the offline partition with fewer shares than the threshold', async () => {
    const before = treeHashes(out('root-partition'));
    const validated = await validateCeremony({
      text: readFileSync(join(EXAMPLES, 'crl.yaml')),
      file: 'crl.yaml',
      baseDir: dir,
    });
    await expect(
      runCeremony(validated, {
        secrets: {
          userPin: USER_PIN,
          shares: [{ source: 'carol', bytes: readFileSync(out('shares/carol.share')) }],
        },
        allowNetwork: true,
        log: () => {},
      }),
    ).rejects.toMatchObject({ code: 'ceremony.unseal_failed' });
    expect(existsSync(out('root-2027.crl'))).toBe(false);
    // Only the partition's own audit trail may record the refused attempt; no key or sealed object changes.
    const after = treeHashes(out('root-partition'));
    for (const [path, hash] of Object.entries(before)) {
      if (!path.includes('audit')) expect(after[path]).toBe(hash);
    }
  });

  it('with two shares the CRL ceremony signs a root CRL that openssl accepts and that revokes the intermediate', () => {
    const run = signet([
      'ceremony',
      'run',
      join(EXAMPLES, 'crl.yaml'),
      '--output-dir',
      dir,
      '--allow-network',
      '--pin-file',
      pins.user,
      '--share-file',
      out('shares/carol.share'),
      '--share-file',
      out('shares/erin.share'),
    ]);
    expect(run.output).toContain('Ceremony completed');
    expect(run.status).toBe(0);
    const crl = openssl([
      'crl',
      '-in',
      out('root-2027.crl'),
      '-CAfile',
      out('root.pem'),
      '-noout',
      '-verify',
      '-text',
    ]);
    expect(crl.output).toContain('verify OK');
    expect(crl.output).toMatch(/Issuing Distribution Point: critical[\s\S]*Only CA Certificates/);
    expect(crl.output).toMatch(/CRL Number:\s+2/);
    expect(crl.output).toContain('Next Update: Jan  1 00:00:00 2028 GMT');
    const verify = openssl([
      'verify',
      '-attime',
      AFTER_CRL,
      '-crl_check_all',
      '-CAfile',
      out('root.pem'),
      '-CRLfile',
      out('root-2027.crl'),
      out('intermediate.pem'),
    ]);
    expect(verify.status).not.toBe(0);
    expect(verify.output).toContain('certificate revoked');
  });

  it('the next CRL ceremony follows the last CRL it is given: its number + 1, recorded in the transcript', () => {
    const run = signet([
      'ceremony',
      'run',
      join(EXAMPLES, 'crl-next.yaml'),
      '--output-dir',
      dir,
      '--allow-network',
      '--pin-file',
      pins.user,
      '--share-file',
      out('shares/dave.share'),
      '--share-file',
      out('shares/erin.share'),
    ]);
    expect(run.output).toContain('Build CRL number 3 ');
    expect(run.status).toBe(0);
    const crl = openssl([
      'crl',
      '-in',
      out('root-2028.crl'),
      '-CAfile',
      out('root.pem'),
      '-noout',
      '-verify',
      '-text',
    ]);
    expect(crl.output).toContain('verify OK');
    expect(crl.output).toMatch(/CRL Number:\s+3\n/);
    const transcript = JSON.parse(readFileSync(out('transcripts/crl-2028.json'), 'utf8'));
    const build = transcript.steps.find((step: { name: string }) =>
      step.name.startsWith('Build CRL number 3'),
    );
    expect(build.detail).toMatchObject({
      previousCrl: 'root-2027.crl',
      previousCrlNumber: '2',
      previousCrlSha256: sha256(out('root-2027.crl')),
    });
    // It still revokes the intermediate the CRL before it revoked.
    const verify = openssl([
      'verify',
      '-attime',
      String(Date.parse('2028-06-01T00:00:00Z') / 1000),
      '-crl_check_all',
      '-CAfile',
      out('root.pem'),
      '-CRLfile',
      out('root-2028.crl'),
      out('intermediate.pem'),
    ]);
    expect(verify.output).toContain('certificate revoked');
  });

  it('each transcript verifies with signet and with openssl against the key the verifier trusts', () => {
    const check = signet([
      'ceremony',
      'verify-transcript',
      out('transcripts/root.json'),
      '--anchor',
      out('root.pem'),
      '--outputs-dir',
      dir,
    ]);
    expect(check.stdout).toContain('signature valid');
    expect(check.stdout).toContain('root.json.p7s: CMS SignedData valid');
    expect(check.stdout).toMatch(/ok +root\.pem/);
    expect(check.status).toBe(0);
    // The CMS SignedData beside each transcript signed by a key with a certificate: openssl checks
    // it with the ceremony root as the only trust anchor (issue #21). The key ceremony's new key
    // has no certificate yet, so its transcript has only the raw signature.
    for (const name of ['root', 'intermediate', 'crl-2027']) {
      const transcript = out(`transcripts/${name}.json`);
      const cms = openssl([
        'cms',
        '-verify',
        '-binary',
        '-content',
        transcript,
        '-inform',
        'DER',
        '-in',
        `${transcript}.p7s`,
        '-CAfile',
        out('root.pem'),
        '-out',
        '/dev/null',
      ]);
      expect(cms.output, name).toContain('Verification successful');
    }
    expect(existsSync(out('transcripts/key.json.p7s'))).toBe(false);
    expect(readFileSync(out('transcripts/root.md'), 'utf8')).toContain(
      'openssl cms -verify -binary -content transcripts/root.json -inform DER -in transcripts/root.json.p7s -CAfile root.pem',
    );
    for (const [name, anchor, hash] of [
      ['root', 'root-pub.pem', 'sha384'],
      ['intermediate', 'root-pub.pem', 'sha384'],
      ['crl-2027', 'root-pub.pem', 'sha384'],
      ['crl-2028', 'root-pub.pem', 'sha384'],
      ['key', 'intermediate-pub.pem', 'sha256'],
    ] as const) {
      const transcript = out(`transcripts/${name}.json`);
      const verified = verifyTranscript({
        transcript: readFileSync(transcript),
        signature: readFileSync(`${transcript}.sig`),
        anchor: readFileSync(out(anchor)),
      });
      expect(verified.transcript.result).toBe('completed');
      expect(
        openssl(['dgst', `-${hash}`, '-verify', out(anchor), '-signature', `${transcript}.sig`, transcript])
          .output,
      ).toContain('Verified OK');
    }
  });
});
