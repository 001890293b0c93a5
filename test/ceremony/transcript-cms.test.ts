import { spawnSync } from 'node:child_process';
import type { webcrypto } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pkijs from 'pkijs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signTranscriptCms, verifyTranscriptCms } from '../../src/ceremony/transcript-signature.ts';
import type { PartitionSession } from '../../src/hsm/partition.ts';
import type { KeyAlgorithm, KeyInfo } from '../../src/hsm/types.ts';
import { createPartitionCrypto, getCryptoKey } from '../../src/hsm/webcrypto.ts';
import { createIntermediateCertificate, createRootCertificate } from '../../src/issuance/ca-certificates.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { createIssuerContext } from '../../src/x509/issuer.ts';
import { hasTool } from '../helpers/tools.ts';
import { CA_USER, OFFICER, openMemoryPartition } from '../hsm/helpers.ts';

/**
 * Issue #21: the ceremony transcript as a detached CMS SignedData (RFC 5652) signed in the
 * partition, which `openssl cms -verify -binary -content transcript.json -inform DER` accepts with
 * the ceremony root as the only trust anchor — for P-256, P-384 and RSA roots. OpenSSL cannot
 * verify an Ed25519 CMS signature at all (3.0 here; still open in 3.6: openssl/openssl#11915,
 * #32248, "eddsa_digest_signverify_init: invalid digest"), so GnuTLS's `certtool --p7-verify`
 * is the independent verifier of the Ed25519 (RFC 8419) ones, and of the others too.
 */

const haveOpenssl = hasTool('openssl', ['version']);
const haveCerttool = hasTool('certtool', ['--version']);
const clock = fixedClock(new Date());
const TRANSCRIPT = Buffer.from('{"format":"signet-ceremony-transcript/1","result":"completed"}\n');

let officer: PartitionSession;
let user: PartitionSession;
let dir: string;

beforeAll(async () => {
  const { partition } = await openMemoryPartition();
  officer = partition.openSession();
  await officer.login({ user: OFFICER.name, pin: OFFICER.pin });
  user = partition.openSession();
  await user.login({ user: CA_USER.name, pin: CA_USER.pin });
  dir = mkdtempSync(join(tmpdir(), 'signet-cms-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let counter = 0;
async function partitionKey(algorithm: KeyAlgorithm): Promise<KeyInfo> {
  return officer.createKey({ label: `cms-${algorithm}-${++counter}`, algorithm });
}

async function rootFor(algorithm: KeyAlgorithm, digitalSignature = true) {
  const key = await partitionKey(algorithm);
  const handle = await getCryptoKey(user, { id: key.id }, { purpose: 'certificate' });
  const root = await createRootCertificate({
    id: `root-${counter}`,
    crypto: createPartitionCrypto(user),
    signingKey: handle as unknown as webcrypto.CryptoKey,
    publicKey: key.publicKey,
    subject: [
      { type: 'O', value: 'Example' },
      { type: 'CN', value: `Example ${algorithm} Ceremony Root` },
    ],
    clock,
    validitySeconds: 365 * 86_400,
    digitalSignature,
  });
  return { key, root };
}

function files(cms: Uint8Array, content: Uint8Array, anchorPem: string) {
  const n = ++counter;
  writeFileSync(join(dir, `t${n}.json`), content);
  writeFileSync(join(dir, `t${n}.json.p7s`), cms);
  writeFileSync(join(dir, `root${n}.pem`), anchorPem);
  return n;
}

/** GnuTLS: `certtool --p7-verify` with `anchor` as the only CA. */
function certtoolVerifies(cms: Uint8Array, content: Uint8Array, anchorPem: string) {
  const n = files(cms, content, anchorPem);
  const result = spawnSync(
    'certtool',
    [
      '--p7-verify',
      '--inder',
      '--infile',
      join(dir, `t${n}.json.p7s`),
      '--load-data',
      join(dir, `t${n}.json`),
      '--load-ca-certificate',
      join(dir, `root${n}.pem`),
    ],
    { encoding: 'utf8' },
  );
  return { ok: result.status === 0, output: result.stdout + result.stderr };
}

/** openssl cms -verify, the command the README gives, with `anchor` as the only trust anchor. */
function opensslVerifies(cms: Uint8Array, content: Uint8Array, anchorPem: string) {
  const n = files(cms, content, anchorPem);
  const result = spawnSync(
    'openssl',
    [
      'cms',
      '-verify',
      '-binary',
      '-content',
      join(dir, `t${n}.json`),
      '-inform',
      'DER',
      '-in',
      join(dir, `t${n}.json.p7s`),
      '-CAfile',
      join(dir, `root${n}.pem`),
      '-out',
      '/dev/null',
    ],
    { encoding: 'utf8' },
  );
  return { ok: result.status === 0, output: result.stdout + result.stderr };
}

describe.each<KeyAlgorithm>(['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'ed25519'])(
  'a %s ceremony root',
  (algorithm) => {
    let key: KeyInfo;
    let root: Awaited<ReturnType<typeof createRootCertificate>>;
    let cms: Uint8Array;
    beforeAll(async () => {
      ({ key, root } = await rootFor(algorithm));
      cms = await signTranscriptCms(
        { keys: user, key: { id: key.id }, certificates: [root.der], signingTime: clock.now() },
        TRANSCRIPT,
      );
    });

    it('signs a detached CMS SignedData that signet verifies against the root', async () => {
      const verified = await verifyTranscriptCms({ transcript: TRANSCRIPT, cms, anchor: root.pem });
      expect(verified.signer).toEqual(root.der);
      expect(verified.path).toEqual([root.der]);
      expect(verified.signingTime?.getTime()).toBe(Math.floor(clock.now().getTime() / 1000) * 1000);
      const signedData = new pkijs.SignedData({ schema: pkijs.ContentInfo.fromBER(cms).content });
      expect(signedData.encapContentInfo.eContent).toBeUndefined();
      // RFC 8419 §3.1: an Ed25519 signer digests with SHA-512.
      const digest = signedData.signerInfos[0]!.digestAlgorithm.algorithmId;
      expect(digest).toBe(
        {
          'ecdsa-p256': '2.16.840.1.101.3.4.2.1',
          'ecdsa-p384': '2.16.840.1.101.3.4.2.2',
          'rsa-2048': '2.16.840.1.101.3.4.2.1',
          ed25519: '2.16.840.1.101.3.4.2.3',
        }[algorithm as string],
      );
    });

    // OpenSSL cannot verify Ed25519 CMS (see above); certtool checks that one below.
    if (algorithm !== 'ed25519') {
      it.skipIf(!haveOpenssl)('is accepted by openssl cms -verify with the root as the only anchor', () => {
        const result = opensslVerifies(cms, TRANSCRIPT, root.pem);
        expect(result.output).toContain('Verification successful');
        expect(result.ok).toBe(true);
      });
    }

    it.skipIf(!haveCerttool)(
      'is accepted by GnuTLS certtool --p7-verify with the root as the only CA',
      () => {
        const result = certtoolVerifies(cms, TRANSCRIPT, root.pem);
        expect(result.output).toContain('Signature status: ok');
        expect(result.ok).toBe(true);
      },
    );

    it('is refused by signet, openssl and certtool for a changed byte of the transcript', async () => {
      const changed = Buffer.from(TRANSCRIPT);
      changed[changed.length - 4]! ^= 0x01;
      await expect(verifyTranscriptCms({ transcript: changed, cms, anchor: root.pem })).rejects.toMatchObject(
        {
          code: 'ceremony.transcript_cms_invalid',
        },
      );
      if (haveOpenssl) expect(opensslVerifies(cms, changed, root.pem).ok).toBe(false);
      if (haveCerttool) expect(certtoolVerifies(cms, changed, root.pem).ok).toBe(false);
    });
  },
);

describe('the CMS transcript signature', () => {
  it('is refused against another root', async () => {
    const { key, root } = await rootFor('ecdsa-p256');
    const { root: other } = await rootFor('ecdsa-p256');
    const cms = await signTranscriptCms(
      { keys: user, key: { id: key.id }, certificates: [root.der], signingTime: clock.now() },
      TRANSCRIPT,
    );
    await expect(
      verifyTranscriptCms({ transcript: TRANSCRIPT, cms, anchor: other.pem }),
    ).rejects.toMatchObject({
      code: 'ceremony.transcript_cms_invalid',
      message: expect.stringContaining('does not validate to the anchor'),
    });
    if (haveOpenssl) expect(opensslVerifies(cms, TRANSCRIPT, other.pem).ok).toBe(false);
    if (haveCerttool) expect(certtoolVerifies(cms, TRANSCRIPT, other.pem).ok).toBe(false);
  });

  it('is refused when the signer certificate may not sign (no digitalSignature)', async () => {
    const { key, root } = await rootFor('ecdsa-p256', false);
    const cms = await signTranscriptCms(
      { keys: user, key: { id: key.id }, certificates: [root.der], signingTime: clock.now() },
      TRANSCRIPT,
    );
    await expect(
      verifyTranscriptCms({ transcript: TRANSCRIPT, cms, anchor: root.pem }),
    ).rejects.toMatchObject({
      code: 'ceremony.transcript_anchor_not_allowed',
    });
  });

  it('carries the chain of an Ed25519 intermediate signer to the Ed25519 root', async () => {
    const { key: rootKey, root } = await rootFor('ed25519');
    const interKey = await partitionKey('ed25519');
    const intermediate = await createIntermediateCertificate({
      crypto: createPartitionCrypto(user),
      signingKey: (await getCryptoKey(
        user,
        { id: rootKey.id },
        { purpose: 'certificate' },
      )) as unknown as webcrypto.CryptoKey,
      publicKey: interKey.publicKey,
      subject: [
        { type: 'O', value: 'Example' },
        { type: 'CN', value: 'Example Ed25519 Issuing CA' },
      ],
      issuer: createIssuerContext({ id: 'root', certificate: root.der }),
      clock,
      validitySeconds: 30 * 86_400,
      pathLength: 0,
      digitalSignature: true,
    });
    const cms = await signTranscriptCms(
      {
        keys: user,
        key: { id: interKey.id },
        certificates: [intermediate.der, root.der],
        signingTime: clock.now(),
      },
      TRANSCRIPT,
    );
    const verified = await verifyTranscriptCms({ transcript: TRANSCRIPT, cms, anchor: root.der });
    expect(verified.path).toEqual([intermediate.der, root.der]);
    if (haveCerttool)
      expect(certtoolVerifies(cms, TRANSCRIPT, root.pem).output).toContain('Signature status: ok');
  });
});
