import { spawnSync } from 'node:child_process';
import { createHash, type webcrypto } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AuthorityKeyIdentifierExtension,
  Extension,
  SubjectKeyIdentifierExtension,
  X509Certificate,
  X509CrlGenerator,
} from '@peculiar/x509';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { verifyTranscript, verifyTranscriptCms } from '../../src/ceremony/transcript-signature.ts';
import { createPartitionCrypto, getCryptoKey } from '../../src/hsm/webcrypto.ts';
import { decodePem } from '../../src/x509/pem.ts';
import { hasTool } from '../helpers/tools.ts';
import {
  createOnlinePartition,
  EXAMPLES,
  openssl,
  pinFiles,
  servePartition,
  signet,
  signLeaf,
  tempDir,
} from './helpers.ts';

const haveOpenssl = hasTool('openssl', ['version']);
const haveCerttool = hasTool('certtool', ['--version']);
const AT = String(Date.parse('2026-06-15T00:00:00Z') / 1000);
const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');

describe.skipIf(!haveOpenssl)('a hierarchy ceremony from the example file', () => {
  let dir: string;
  let pins: { officer: string; user: string };
  let issuingSecret: string;
  let run: ReturnType<typeof signet>;
  const out = (name: string) => join(dir, name);

  beforeAll(async () => {
    dir = tempDir('hierarchy');
    pins = pinFiles(dir);
    issuingSecret = join(dir, 'issuing.secret');
    await createOnlinePartition(out('issuing-partition'), 'issuing', issuingSecret);
    run = signet([
      'ceremony',
      'run',
      join(EXAMPLES, 'hierarchy.yaml'),
      '--output-dir',
      dir,
      '--allow-network',
      '--officer-pin-file',
      pins.officer,
      '--pin-file',
      pins.user,
      '--online-officer-pin-file',
      pins.officer,
      '--online-pin-file',
      pins.user,
      '--online-secret-file',
      issuingSecret,
    ]);
  });

  it('creates the root, the issuing CA and the first root CRL in one run', () => {
    expect(run.output).toContain('Ceremony completed');
    expect(run.status).toBe(0);
    expect(
      openssl(['verify', '-attime', AT, '-x509_strict', '-CAfile', out('root.pem'), out('issuing-2026.pem')])
        .output,
    ).toContain('issuing-2026.pem: OK');
  });

  it('records participants, the configuration hash, keys, outputs, lint results and custodian shares in the transcript', () => {
    const transcript = JSON.parse(readFileSync(out('transcripts/hierarchy.json'), 'utf8'));
    expect(transcript.ceremony.configSha256).toBe(sha256(readFileSync(join(EXAMPLES, 'hierarchy.yaml'))));
    expect(transcript.participants.map((p: { name: string }) => p.name)).toEqual([
      'Alice Example',
      'Bob Example',
    ]);
    const spki = (file: string) => sha256(decodePem(readFileSync(out(file), 'utf8'), 'PUBLIC KEY').der);
    expect(transcript.keys).toEqual([
      expect.objectContaining({
        role: 'root',
        uri: 'hsm:partition=root;label=example-root-r2',
        publicKeySha256: spki('root-pub.pem'),
      }),
      expect.objectContaining({
        role: 'intermediate-0',
        uri: 'hsm:partition=issuing;label=example-issuing-2026',
        publicKeySha256: spki('issuing-2026-pub.pem'),
      }),
    ]);
    for (const output of transcript.outputs)
      expect(sha256(readFileSync(out(output.path)))).toBe(output.sha256);
    expect(transcript.lint.map((l: { subject: string; passed: boolean }) => [l.subject, l.passed])).toEqual([
      ['root.pem', true],
      ['issuing-2026.pem', true],
      ['root-r2-1.crl', true],
    ]);
    expect(transcript.custodians[0]).toMatchObject({ threshold: 2, shares: 3 });
    expect(transcript.signer).toMatchObject({ role: 'root', algorithm: 'ecdsa-sha384' });
    const markdown = readFileSync(out('transcripts/hierarchy.md'), 'utf8');
    expect(markdown).toContain(transcript.ceremony.configSha256);
    expect(markdown).toContain('Carol Example');
  });

  it('signs a root CRL that openssl accepts, and openssl verify -crl_check_all accepts a leaf under it', async () => {
    const crl = openssl([
      'crl',
      '-in',
      out('root-r2-1.crl'),
      '-CAfile',
      out('root.pem'),
      '-noout',
      '-verify',
      '-text',
    ]);
    expect(crl.output).toContain('verify OK');
    expect(crl.output).toMatch(/Only CA Certificates/);
    expect(crl.output).toMatch(/CRL Number:\s+1\b/);
    expect(crl.output).toContain('No Revoked Certificates.');

    const served = await servePartition(out('issuing-partition'), 'issuing', {
      secret: readFileSync(issuingSecret),
    });
    try {
      const intermediatePem = readFileSync(out('issuing-2026.pem'), 'utf8');
      const leaf = await signLeaf({
        intermediatePem,
        keys: served.client,
        keyLabel: 'example-issuing-2026',
        sans: [
          { type: 'dns', value: 'api.example.org' },
          { type: 'ip', value: '192.0.2.10' },
        ],
      });
      writeFileSync(out('leaf.pem'), leaf.pem);
      // The leaf's issuer needs a CRL too for -crl_check_all: the issuing CA signs an empty one through the partition.
      const intermediate = new X509Certificate(intermediatePem);
      const ski = intermediate.getExtension(SubjectKeyIdentifierExtension)!.keyId;
      const key = await getCryptoKey(served.client, { label: 'example-issuing-2026' }, { purpose: 'crl' });
      const issuingCrl = await X509CrlGenerator.create(
        {
          issuer: intermediate.subjectName,
          thisUpdate: new Date('2026-06-10T00:00:00Z'),
          nextUpdate: new Date('2026-06-20T00:00:00Z'),
          signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams,
          signingKey: key as unknown as webcrypto.CryptoKey,
          extensions: [
            new AuthorityKeyIdentifierExtension(ski),
            new Extension('2.5.29.20', false, new Uint8Array([0x02, 0x01, 0x01])),
          ],
        },
        createPartitionCrypto(served.client),
      );
      writeFileSync(out('issuing.crl'), issuingCrl.toString('pem').replace(/ CRL-----/g, ' X509 CRL-----'));
      const verify = openssl([
        'verify',
        '-attime',
        AT,
        '-crl_check_all',
        '-CAfile',
        out('root.pem'),
        '-untrusted',
        out('issuing-2026.pem'),
        '-CRLfile',
        out('root-r2-1.crl'),
        '-CRLfile',
        out('issuing.crl'),
        out('leaf.pem'),
      ]);
      expect(verify.output).toContain('leaf.pem: OK');
      // Without the root CRL the chain cannot be checked: the CRL is what makes the check pass.
      const withoutRootCrl = openssl([
        'verify',
        '-attime',
        AT,
        '-crl_check_all',
        '-CAfile',
        out('root.pem'),
        '-untrusted',
        out('issuing-2026.pem'),
        '-CRLfile',
        out('issuing.crl'),
        out('leaf.pem'),
      ]);
      expect(withoutRootCrl.output).toContain('unable to get certificate CRL');
    } finally {
      await served.stop();
    }
  });

  it('the transcript verifies against the root certificate, and a tampered copy fails with signet and with openssl', () => {
    const transcript = out('transcripts/hierarchy.json');
    const good = signet(['ceremony', 'verify-transcript', transcript, '--anchor', out('root.pem')]);
    expect(good.stdout).toContain('signature valid');
    expect(good.status).toBe(0);
    expect(
      openssl([
        'dgst',
        '-sha384',
        '-verify',
        out('root-pub.pem'),
        '-signature',
        `${transcript}.sig`,
        transcript,
      ]).output,
    ).toContain('Verified OK');

    const text = readFileSync(transcript, 'utf8');
    const tampered = out('transcripts/tampered.json');
    writeFileSync(tampered, text.replace('"Bob Example"', '"Eve Example"'));
    const bad = signet([
      'ceremony',
      'verify-transcript',
      tampered,
      '--anchor',
      out('root.pem'),
      '--signature',
      `${transcript}.sig`,
    ]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('[ceremony.transcript_signature_invalid]');
    const badOpenssl = openssl([
      'dgst',
      '-sha384',
      '-verify',
      out('root-pub.pem'),
      '-signature',
      `${transcript}.sig`,
      tampered,
    ]);
    expect(badOpenssl.status).not.toBe(0);
    expect(badOpenssl.output).toContain('Verification failure');

    // The CMS SignedData: openssl with the root as the only anchor, and not for the tampered copy.
    const cms = (content: string) =>
      openssl([
        'cms',
        '-verify',
        '-binary',
        '-content',
        content,
        '-inform',
        'DER',
        '-in',
        `${transcript}.p7s`,
        '-CAfile',
        out('root.pem'),
        '-out',
        '/dev/null',
      ]);
    expect(good.stdout).toContain('hierarchy.json.p7s: CMS SignedData valid');
    expect(cms(transcript).output).toContain('Verification successful');
    expect(cms(tampered).status).not.toBe(0);
  });

  it('a transcript does not verify against a key the verifier did not choose', () => {
    expect(() =>
      verifyTranscript({
        transcript: readFileSync(out('transcripts/hierarchy.json')),
        signature: readFileSync(out('transcripts/hierarchy.json.sig')),
        anchor: readFileSync(out('issuing-2026-pub.pem')),
      }),
    ).toThrow(expect.objectContaining({ code: 'ceremony.transcript_algorithm_mismatch' }));
  });
});

describe.skipIf(!haveOpenssl || !haveCerttool)('an Ed25519 hierarchy ceremony (RFC 8410, RFC 8419)', () => {
  let dir: string;
  let run: ReturnType<typeof signet>;
  const out = (name: string) => join(dir, name);

  beforeAll(async () => {
    dir = tempDir('hierarchy-ed25519');
    const pins = pinFiles(dir);
    const secret = join(dir, 'issuing.secret');
    await createOnlinePartition(out('issuing-partition'), 'issuing', secret);
    // The example file with Ed25519 keys for the root and the issuing CA.
    const config = parse(readFileSync(join(EXAMPLES, 'hierarchy.yaml'), 'utf8'));
    config.root.key = { label: 'example-root-ed', type: 'ed25519' };
    config.intermediates[0]['subject-key'].key = { label: 'example-issuing-ed', type: 'ed25519' };
    writeFileSync(out('hierarchy-ed25519.yaml'), stringify(config));
    run = signet([
      'ceremony',
      'run',
      out('hierarchy-ed25519.yaml'),
      '--output-dir',
      dir,
      '--allow-network',
      '--officer-pin-file',
      pins.officer,
      '--pin-file',
      pins.user,
      '--online-officer-pin-file',
      pins.officer,
      '--online-pin-file',
      pins.user,
      '--online-secret-file',
      secret,
    ]);
  });

  it("validates the issuing CA's path to the root in the ceremony (pkijs with Ed25519) and openssl agrees", () => {
    expect(run.output).toContain('Ceremony completed');
    expect(run.status).toBe(0);
    const transcript = JSON.parse(readFileSync(out('transcripts/hierarchy.json'), 'utf8'));
    expect(
      transcript.steps.find((s: { name: string }) =>
        s.name.startsWith('Validate the intermediate certificate 0'),
      ),
    ).toMatchObject({ result: 'ok', detail: { pathLength: 2 } });
    expect(
      openssl(['verify', '-attime', AT, '-x509_strict', '-CAfile', out('root.pem'), out('issuing-2026.pem')])
        .output,
    ).toContain('issuing-2026.pem: OK');
  });

  it('signs the transcript as an Ed25519 CMS SignedData that signet and GnuTLS certtool verify against the root', async () => {
    const transcript = out('transcripts/hierarchy.json');
    const verified = await verifyTranscriptCms({
      transcript: readFileSync(transcript),
      cms: readFileSync(`${transcript}.p7s`),
      anchor: readFileSync(out('root.pem')),
    });
    expect(verified.path).toHaveLength(1);
    const certtool = (content: string) =>
      spawnSync(
        'certtool',
        [
          '--p7-verify',
          '--inder',
          '--infile',
          `${transcript}.p7s`,
          '--load-data',
          content,
          '--load-ca-certificate',
          out('root.pem'),
        ],
        { encoding: 'utf8' },
      );
    const good = certtool(transcript);
    expect(good.stdout + good.stderr).toContain('Signature status: ok');
    expect(good.status).toBe(0);
    const tampered = out('transcripts/tampered.json');
    writeFileSync(tampered, readFileSync(transcript, 'utf8').replace('"Bob Example"', '"Eve Example"'));
    expect(certtool(tampered).status).not.toBe(0);
    const check = signet(['ceremony', 'verify-transcript', transcript, '--anchor', out('root.pem')]);
    expect(check.stdout).toContain('CMS SignedData valid');
    expect(check.status).toBe(0);
  });
});
