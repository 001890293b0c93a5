import { execFileSync } from 'node:child_process';
import { webcrypto } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, test } from 'vitest';
import { parse, stringify } from 'yaml';
import { type ConfigProblem, isConfigInvalid } from '../../src/ceremony/errors.ts';
import { validateCeremony } from '../../src/ceremony/validate.ts';
import { createIntermediateCertificate, createRootCertificate } from '../../src/issuance/ca-certificates.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { buildCrl } from '../../src/revocation/crl-builder.ts';
import { createIssuerContext } from '../../src/x509/issuer.ts';
import { crlToPem, toPem } from '../../src/x509/pem.ts';
import { hasTool } from '../helpers/tools.ts';
import { EXAMPLES, tempDir } from './helpers.ts';

const haveOpenssl = hasTool('openssl', ['version']);
// biome-ignore lint/suspicious/noExplicitAny: parsed example documents are edited freely in the table
type Doc = Record<string, any>;

const example = (name: string): Doc => parse(readFileSync(join(EXAMPLES, `${name}.yaml`), 'utf8'));

async function keyPair() {
  return (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
}
async function spkiPem(key: webcrypto.CryptoKey) {
  return toPem(new Uint8Array(await webcrypto.subtle.exportKey('spki', key)), 'PUBLIC KEY');
}

describe.skipIf(!haveOpenssl)('validation against the file system, before any partition is touched', () => {
  let dir: string;
  const file = (name: string) => join(dir, name);

  beforeAll(async () => {
    dir = tempDir('validate');
    mkdirSync(file('root-partition'));
    // Issuer certificates with exact dates, made with src/x509's CA builders and Node keys.
    const clock = fixedClock('2026-01-01T00:01:00Z');
    const year = 365 * 86_400;
    const root = await keyPair();
    const rootCert = await createRootCertificate({
      id: 'root',
      crypto: webcrypto,
      signingKey: root.privateKey,
      publicKey: root.publicKey,
      subject: [{ type: 'CN', value: 'Example Root CA R1' }],
      clock,
      validitySeconds: 20 * year,
      digitalSignature: true,
    });
    writeFileSync(file('root.pem'), rootCert.pem);
    writeFileSync(file('root-pub.pem'), await spkiPem(root.publicKey));
    const quiet = await keyPair();
    const quietRoot = await createRootCertificate({
      id: 'quiet',
      crypto: webcrypto,
      signingKey: quiet.privateKey,
      publicKey: quiet.publicKey,
      subject: [{ type: 'CN', value: 'Example Quiet Root' }],
      clock,
      validitySeconds: 20 * year,
    });
    writeFileSync(file('quiet-root.pem'), quietRoot.pem);
    const inter = await keyPair();
    writeFileSync(file('intermediate-pub.pem'), await spkiPem(inter.publicKey));
    const other = await keyPair();
    const otherRoot = await createRootCertificate({
      id: 'other',
      crypto: webcrypto,
      signingKey: other.privateKey,
      publicKey: other.publicKey,
      subject: [{ type: 'CN', value: 'Example Other Root' }],
      clock,
      validitySeconds: 20 * year,
    });
    const foreign = await createIntermediateCertificate({
      issuer: createIssuerContext({ id: 'other', certificate: otherRoot.der }),
      crypto: webcrypto,
      signingKey: other.privateKey,
      publicKey: inter.publicKey,
      subject: [{ type: 'CN', value: 'Example Foreign CA' }],
      clock,
      validitySeconds: year,
    });
    writeFileSync(file('foreign.pem'), foreign.pem);
    // CRLs published before (crl-next.yaml follows root-2027.crl): the root's, and another root's.
    const publishedCrl = async (issuer: Uint8Array, key: webcrypto.CryptoKey, number: bigint) =>
      crlToPem(
        (
          await buildCrl({
            issuer,
            signer: { crypto: webcrypto, key },
            number,
            thisUpdate: new Date('2027-01-01T00:00:00Z'),
            nextUpdate: new Date('2028-01-01T00:00:00Z'),
            issuingDistributionPoint: { onlyContainsCACerts: true },
          })
        ).der,
      );
    writeFileSync(file('root-2027.crl'), await publishedCrl(rootCert.der, root.privateKey, 2n));
    writeFileSync(file('other-2027.crl'), await publishedCrl(otherRoot.der, other.privateKey, 2n));
    writeFileSync(file('garbage.pem'), 'not a certificate\n');
    // An end-entity certificate and a CSR, from openssl.
    execFileSync('openssl', [
      'genpkey',
      '-algorithm',
      'EC',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-out',
      file('ee.key'),
    ]);
    execFileSync('openssl', [
      'req',
      '-x509',
      '-key',
      file('ee.key'),
      '-subj',
      '/CN=www.example.com',
      '-days',
      '30',
      '-out',
      file('ee.pem'),
      '-addext',
      'basicConstraints=critical,CA:FALSE',
    ]);
    execFileSync('openssl', [
      'req',
      '-new',
      '-key',
      file('ee.key'),
      '-subj',
      '/CN=Example Issuing CA',
      '-out',
      file('good.csr'),
    ]);
    const der = execFileSync('openssl', ['req', '-in', file('good.csr'), '-outform', 'DER']);
    der[der.length - 5]! ^= 0x01; // inside the signature
    writeFileSync(file('bad.csr'), der);
  });

  async function problems(doc: Doc): Promise<ConfigProblem[]> {
    try {
      await validateCeremony({ text: stringify(doc), file: 'test.yaml', baseDir: dir });
    } catch (error) {
      if (isConfigInvalid(error)) return error.details.problems;
      throw error;
    }
    return [];
  }

  it('accepts the intermediate example once its inputs exist', async () => {
    expect(await problems(example('intermediate'))).toEqual([]);
  });

  it('accepts a CSR as the subject key once its signature verifies', async () => {
    const doc = example('intermediate');
    doc['subject-key'] = { 'csr-path': 'good.csr' };
    expect(await problems(doc)).toEqual([]);
  });

  /** crl-next.yaml without its revoked intermediate (no intermediate.pem here). */
  const nextCrl = () => {
    const doc = example('crl-next');
    doc['crl-profile']['revoked-certificates'] = [];
    return doc;
  };

  it('numbers a CRL after the one it follows, from previous-crl-path', async () => {
    const validated = await validateCeremony({
      text: stringify(nextCrl()),
      file: 'crl-next.yaml',
      baseDir: dir,
    });
    expect(validated.inputs.crlNumber).toBe(3n);
    expect(validated.inputs.previousCrl).toMatchObject({ path: 'root-2027.crl', number: 2n });
    const explicit = nextCrl();
    explicit['crl-profile'].number = 10;
    expect(
      (await validateCeremony({ text: stringify(explicit), file: 'crl-next.yaml', baseDir: dir })).inputs
        .crlNumber,
    ).toBe(10n);
  });

  test.each<[string, (d: Doc) => void, string, string]>([
    [
      "another issuer's CRL",
      (d) => {
        d['crl-profile']['previous-crl-path'] = 'other-2027.crl';
      },
      'crl-profile.previous-crl-path',
      'ceremony.config.previous_crl_not_from_issuer',
    ],
    [
      'a file that is not a CRL',
      (d) => {
        d['crl-profile']['previous-crl-path'] = 'root.pem';
      },
      'crl-profile.previous-crl-path',
      'ceremony.config.input_invalid',
    ],
    [
      'a missing file',
      (d) => {
        d['crl-profile']['previous-crl-path'] = 'nope.crl';
      },
      'crl-profile.previous-crl-path',
      'ceremony.config.input_missing',
    ],
    [
      'a number not above the previous CRL',
      (d) => {
        d['crl-profile'].number = 2;
      },
      'crl-profile.number',
      'ceremony.config.crl_number_not_increasing',
    ],
    [
      'a CRL dated no later than the previous one',
      (d) => {
        d['crl-profile']['this-update'] = '2027-01-01T00:00:00Z';
      },
      'crl-profile.this-update',
      'ceremony.config.crl_before_previous',
    ],
  ])('refuses to follow %s', async (_name, mutate, path, code) => {
    const doc = nextCrl();
    mutate(doc);
    expect(await problems(doc)).toContainEqual(expect.objectContaining({ path, code }));
  });

  test.each<[string, string, (d: Doc) => void, string, string]>([
    [
      'an output that exists',
      'intermediate',
      (d) => {
        d.outputs['certificate-path'] = 'root.pem';
      },
      'outputs.certificate-path',
      'ceremony.config.output_exists',
    ],
    [
      'a transcript that exists',
      'intermediate',
      (d) => {
        d.transcript.path = 'garbage.json';
        writeFileSync(file('garbage.json'), '{}');
      },
      'transcript.path',
      'ceremony.config.output_exists',
    ],
    [
      'a missing issuer certificate',
      'intermediate',
      (d) => {
        d.issuer['certificate-path'] = 'nope.pem';
      },
      'issuer.certificate-path',
      'ceremony.config.input_missing',
    ],
    [
      'an issuer file that is not a certificate',
      'intermediate',
      (d) => {
        d.issuer['certificate-path'] = 'garbage.pem';
      },
      'issuer.certificate-path',
      'ceremony.config.input_invalid',
    ],
    [
      'an issuer that is not a CA',
      'intermediate',
      (d) => {
        d.issuer['certificate-path'] = 'ee.pem';
      },
      'issuer.certificate-path',
      'ceremony.config.issuer_not_ca',
    ],
    [
      'an issuer that may not sign the transcript',
      'intermediate',
      (d) => {
        d.issuer['certificate-path'] = 'quiet-root.pem';
      },
      'transcript.signing-key',
      'ceremony.config.transcript_signer_missing',
    ],
    [
      'an intermediate outliving its issuer',
      'intermediate',
      (d) => {
        d['certificate-profile']['not-after'] = '2047-01-01T00:00:00Z';
      },
      'certificate-profile.not-after',
      'ceremony.config.validity_outside_issuer',
    ],
    [
      'an intermediate starting before its issuer',
      'intermediate',
      (d) => {
        d['certificate-profile']['not-before'] = '2025-06-01T00:00:00Z';
      },
      'certificate-profile.not-before',
      'ceremony.config.validity_outside_issuer',
    ],
    [
      'a missing subject public key',
      'intermediate',
      (d) => {
        d['subject-key']['public-key-path'] = 'nope.pem';
      },
      'subject-key.public-key-path',
      'ceremony.config.input_missing',
    ],
    [
      'a CSR whose signature does not verify',
      'intermediate',
      (d) => {
        d['subject-key'] = { 'csr-path': 'bad.csr' };
      },
      'subject-key.csr-path',
      'ceremony.config.input_invalid',
    ],
    [
      'the issuer certifying its own key',
      'intermediate',
      (d) => {
        d['subject-key']['public-key-path'] = 'root-pub.pem';
      },
      'subject-key',
      'ceremony.config.subject_is_issuer',
    ],
    [
      'a missing offline partition',
      'intermediate',
      (d) => {
        d['offline-partition'].dir = 'nope';
      },
      'offline-partition.dir',
      'ceremony.config.input_missing',
    ],
    [
      'a partition folder that is a file',
      'crl',
      (d) => {
        d['offline-partition'].dir = 'root.pem';
      },
      'offline-partition.dir',
      'ceremony.config.input_invalid',
    ],
    [
      'a revoked certificate of another issuer',
      'crl',
      (d) => {
        d['crl-profile']['revoked-certificates'][0]['certificate-path'] = 'foreign.pem';
      },
      'crl-profile.revoked-certificates.0.certificate-path',
      'ceremony.config.not_issued_by_issuer',
    ],
    [
      'a CRL dated before its issuer',
      'crl',
      (d) => {
        d['crl-profile']['this-update'] = '2025-12-01T00:00:00Z';
        d['crl-profile']['revoked-certificates'] = [];
      },
      'crl-profile.this-update',
      'ceremony.config.crl_before_issuer',
    ],
    [
      'a profile the certificate encoders refuse',
      'intermediate',
      (d) => {
        d['certificate-profile']['name-constraints'].permitted.email = ['jürgen@example.com'];
      },
      'certificate-profile',
      'ceremony.config.profile_unencodable',
    ],
    [
      'a root over an existing partition folder',
      'root',
      () => {},
      'offline-partition.dir',
      'ceremony.config.output_exists',
    ],
    [
      'a share over an existing file',
      'root',
      (d) => {
        d['offline-partition'].create.custodians[1]['share-path'] = 'quiet-root.pem';
      },
      'offline-partition.create.custodians.1.share-path',
      'ceremony.config.output_exists',
    ],
  ])('refuses %s', async (_name, base, mutate, path, code) => {
    const doc = example(base);
    mutate(doc);
    expect(await problems(doc)).toContainEqual(expect.objectContaining({ path, code }));
  });
});
