import { webcrypto } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { afterAll, beforeAll, describe, expect, it, test } from 'vitest';
import type { RemotePartition } from '../../src/hsm/client.ts';
import { HsmError, type KeyAlgorithm, type SignMechanism } from '../../src/hsm/types.ts';
import {
  createPartitionCrypto,
  getCryptoKey,
  getCryptoKeyPair,
  PartitionCryptoKey,
} from '../../src/hsm/webcrypto.ts';
import { hasTool } from '../helpers/tools.ts';
import { openssl, startTestPartition, type TestPartition, tempDir } from './helpers.ts';

const haveOpenssl = hasTool('openssl', ['version']);

async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof HsmError) return error.rv;
    throw error;
  }
  throw new Error('expected a refusal');
}

const pemCrl = (crl: x509.X509Crl) => x509.PemConverter.encode(crl.rawData, 'X509 CRL');

describe('the WebCrypto facade over a partition process', () => {
  let partition: TestPartition;
  let officer: RemotePartition;
  let user: RemotePartition;
  let scratch: ReturnType<typeof tempDir>;
  const crypto = createPartitionCrypto();

  beforeAll(async () => {
    partition = await startTestPartition({ name: 'issuing' });
    officer = await partition.officer();
    user = await partition.user();
    scratch = tempDir();
    await Promise.all(
      (['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'ed25519'] as KeyAlgorithm[]).map((algorithm) =>
        officer.createKey({ label: `ca-${algorithm}`, algorithm }),
      ),
    );
  }, 120_000);

  afterAll(async () => {
    await partition?.stop();
    scratch?.cleanup();
  });

  const file = (name: string, content: string | Uint8Array) => {
    const path = join(scratch.dir, name);
    writeFileSync(path, content);
    return path;
  };

  test.each([
    ['ecdsa-p256', 'ecdsa-sha256'],
    ['ecdsa-p384', 'ecdsa-sha384'],
    ['rsa-2048', 'rsa-pkcs1-sha256'],
    ['rsa-2048', 'rsa-pss-sha256'],
    ['ed25519', 'ed25519'],
  ] as [KeyAlgorithm, SignMechanism][])(
    'signs a root, a leaf certificate and a CRL with a %s key (%s) that openssl verifies',
    async (algorithm, mechanism) => {
      const ref = { label: `ca-${algorithm}` };
      const certKeys = await getCryptoKeyPair(user, ref, { purpose: 'certificate', mechanism });
      const now = new Date();
      const notAfter = new Date(now.getTime() + 86_400_000);
      const root = await x509.X509CertificateGenerator.createSelfSigned(
        {
          serialNumber: '01',
          name: `CN=Signet Test Root ${mechanism}, O=Example`,
          notBefore: now,
          notAfter,
          keys: certKeys,
          extensions: [
            new x509.BasicConstraintsExtension(true, undefined, true),
            new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
            await x509.SubjectKeyIdentifierExtension.create(certKeys.publicKey, false, crypto),
          ],
        },
        crypto,
      );
      const leafKeys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
        'sign',
        'verify',
      ]);
      const leaf = await x509.X509CertificateGenerator.create(
        {
          serialNumber: '02',
          subject: 'CN=leaf.example.com',
          issuer: root.subject,
          notBefore: now,
          notAfter,
          publicKey: leafKeys.publicKey,
          signingKey: certKeys.privateKey,
          extensions: [
            new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'leaf.example.com' }]),
            await x509.AuthorityKeyIdentifierExtension.create(certKeys.publicKey, false, crypto),
          ],
        },
        crypto,
      );
      const crlKey = await getCryptoKey(user, ref, { purpose: 'crl', mechanism });
      const crl = await x509.X509CrlGenerator.create(
        {
          issuer: root.subject,
          thisUpdate: now,
          nextUpdate: notAfter,
          signingKey: crlKey,
          signingAlgorithm: crlKey.algorithm,
          entries: [{ serialNumber: '02', revocationDate: now, reason: x509.X509CrlReason.keyCompromise }],
          extensions: [new x509.Extension('2.5.29.20', false, new asn1js.Integer({ value: 1 }).toBER())],
        },
        crypto,
      );
      // Node's own view first, then openssl's.
      expect(await root.verify({ signatureOnly: true }, webcrypto)).toBe(true);
      expect(await leaf.verify({ publicKey: root, signatureOnly: true }, webcrypto)).toBe(true);
      expect(await crl.verify({ publicKey: root }, webcrypto)).toBe(true);
      if (!haveOpenssl) return;
      const rootPem = file(`root-${mechanism}.pem`, root.toString('pem'));
      const leafPem = file(`leaf-${mechanism}.pem`, leaf.toString('pem'));
      const crlPem = file(`crl-${mechanism}.pem`, pemCrl(crl));
      const verified = openssl(['verify', '-CAfile', rootPem, leafPem]);
      expect(verified.output).toContain(': OK');
      expect(verified.status).toBe(0);
      const crlVerified = openssl(['crl', '-in', crlPem, '-CAfile', rootPem, '-noout', '-verify']);
      expect(crlVerified.output).toContain('verify OK');
      expect(crlVerified.status).toBe(0);
      // The leaf is on the CRL: openssl with CRL checking must now refuse it.
      const revoked = openssl(['verify', '-crl_check', '-CAfile', rootPem, '-CRLfile', crlPem, leafPem]);
      expect(revoked.status).not.toBe(0);
      expect(revoked.output).toContain('certificate revoked');
    },
  );

  it('signs an OCSP response through pkijs that openssl verifies', async () => {
    const keys = await getCryptoKeyPair(user, { label: 'ca-ecdsa-p256' }, { purpose: 'certificate' });
    const now = new Date(Math.floor(Date.now() / 1000) * 1000);
    const root = await x509.X509CertificateGenerator.createSelfSigned(
      {
        serialNumber: '0a',
        name: 'CN=Signet OCSP Test Root',
        notBefore: now,
        notAfter: new Date(now.getTime() + 86_400_000),
        keys,
        extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
      },
      crypto,
    );
    const engine = new pkijs.CryptoEngine({ name: 'partition', crypto });
    const rootPkijs = pkijs.Certificate.fromBER(root.rawData);
    const certId = new pkijs.CertID();
    await certId.createForCertificate(
      rootPkijs,
      { hashAlgorithm: 'SHA-256', issuerCertificate: rootPkijs },
      engine,
    );
    const response = new pkijs.BasicOCSPResponse();
    response.tbsResponseData.responderID = rootPkijs.subject;
    response.tbsResponseData.producedAt = now;
    response.tbsResponseData.responses.push(
      new pkijs.SingleResponse({
        certID: certId,
        certStatus: new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber: 0 } }),
        thisUpdate: now,
      }),
    );
    response.certs = [rootPkijs];
    const ocspKey = await getCryptoKey(user, { label: 'ca-ecdsa-p256' }, { purpose: 'ocsp' });
    await response.sign(ocspKey, 'SHA-256', engine);
    const ocsp = new pkijs.OCSPResponse({
      responseStatus: new asn1js.Enumerated({ value: 0 }),
      responseBytes: new pkijs.ResponseBytes({
        responseType: '1.3.6.1.5.5.7.48.1.1',
        response: new asn1js.OctetString({ valueHex: response.toSchema().toBER() }),
      }),
    });
    if (!haveOpenssl) return;
    const respin = file('ocsp.der', new Uint8Array(ocsp.toSchema().toBER()));
    const rootPem = file('ocsp-root.pem', root.toString('pem'));
    const result = openssl(['ocsp', '-respin', respin, '-CAfile', rootPem, '-resp_text']);
    expect(result.output).toContain('Response verify OK');
  });

  it('hands out a non-extractable private handle that holds no key material', async () => {
    const key = await getCryptoKey(user, { label: 'ca-ecdsa-p256' }, { purpose: 'certificate' });
    expect(key).toBeInstanceOf(PartitionCryptoKey);
    expect(key.type).toBe('private');
    expect(key.extractable).toBe(false);
    expect(key.usages).toEqual(['sign']);
    expect(key.algorithm).toMatchObject({ name: 'ECDSA', namedCurve: 'P-256', hash: { name: 'SHA-256' } });
    expect(x509.CryptoProvider.isCryptoKey(key)).toBe(true);
    expect(Object.prototype.toString.call(key)).toBe('[object CryptoKey]');
    // Nothing reachable from the handle is a private key.
    expect(JSON.stringify(key.keyInfo)).not.toMatch(/PRIVATE/);
  });

  test.each(['pkcs8', 'jwk', 'raw', 'spki'])(
    'refuses exportKey(%s) on a handle (CKR_KEY_UNEXTRACTABLE)',
    async (format) => {
      const key = await getCryptoKey(user, { label: 'ca-rsa-2048' }, { purpose: 'certificate' });
      expect(await refusal(crypto.subtle.exportKey(format as 'pkcs8', key))).toBe('CKR_KEY_UNEXTRACTABLE');
    },
  );

  it('refuses wrapKey on a handle and any use of it other than signing', async () => {
    const key = await getCryptoKey(user, { label: 'ca-ed25519' }, { purpose: 'certificate' });
    const wrapping = await webcrypto.subtle.generateKey({ name: 'AES-KW', length: 256 }, false, ['wrapKey']);
    expect(await refusal(crypto.subtle.wrapKey('pkcs8', key, wrapping, { name: 'AES-KW' }))).toBe(
      'CKR_KEY_UNEXTRACTABLE',
    );
    expect(await refusal(crypto.subtle.deriveBits({ name: 'X25519' } as never, key, 256))).toBe(
      'CKR_KEY_FUNCTION_NOT_PERMITTED',
    );
  });

  it('refuses a WebCrypto algorithm that does not fit the key (CKR_KEY_TYPE_INCONSISTENT), and SHA-1', async () => {
    const ec = await getCryptoKey(user, { label: 'ca-ecdsa-p256' }, { purpose: 'certificate' });
    const data = new Uint8Array([1, 2, 3]);
    expect(await refusal(crypto.subtle.sign({ name: 'RSASSA-PKCS1-v1_5' }, ec, data))).toBe(
      'CKR_KEY_TYPE_INCONSISTENT',
    );
    expect(await refusal(crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-1' } as never, ec, data))).toBe(
      'CKR_MECHANISM_INVALID',
    );
    expect(
      await refusal(
        getCryptoKey(user, { label: 'ca-ed25519' }, { purpose: 'crl', mechanism: 'ecdsa-sha256' }),
      ),
    ).toBe('CKR_KEY_TYPE_INCONSISTENT');
  });

  it('carries the handle purpose to the partition, which refuses a purpose the key lacks', async () => {
    await officer.createKey({ label: 'crl-only', algorithm: 'ecdsa-p256', purposes: ['crl'] });
    const asCertificate = await getCryptoKey(user, { label: 'crl-only' }, { purpose: 'certificate' });
    const asCrl = await getCryptoKey(user, { label: 'crl-only' }, { purpose: 'crl' });
    const data = new Uint8Array([1, 2, 3]);
    expect(await refusal(crypto.subtle.sign({ name: 'ECDSA' }, asCertificate, data))).toBe(
      'CKR_KEY_FUNCTION_NOT_PERMITTED',
    );
    const signature = await crypto.subtle.sign({ name: 'ECDSA' }, asCrl, data);
    expect(await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, asCrl, signature, data)).toBe(true);
  });

  it('signs with a handle only through its own partition when the Crypto is bound to one', async () => {
    const bound = createPartitionCrypto(officer);
    const key = await getCryptoKey(user, { label: 'ca-ed25519' }, { purpose: 'other' });
    expect(await refusal(bound.subtle.sign({ name: 'Ed25519' }, key, new Uint8Array(1)))).toBe(
      'CKR_KEY_HANDLE_INVALID',
    );
  });

  it('signs a certificate too large for one frame through the facade (multi-part underneath)', async () => {
    const keys = await getCryptoKeyPair(user, { label: 'ca-ecdsa-p384' }, { purpose: 'certificate' });
    const now = new Date();
    // A private-arc extension of 1.5 MiB makes the TBS larger than one 1 MiB frame.
    const padding = new x509.Extension(
      '1.3.6.1.4.1.55555.1',
      false,
      new Uint8Array(1.5 * 1024 * 1024).fill(0x5a),
    );
    const big = await x509.X509CertificateGenerator.createSelfSigned(
      {
        serialNumber: '0b',
        name: 'CN=Big',
        notBefore: now,
        notAfter: new Date(now.getTime() + 3_600_000),
        keys,
        extensions: [padding],
      },
      crypto,
    );
    expect(big.rawData.byteLength).toBeGreaterThan(1024 * 1024);
    expect(await big.verify({ signatureOnly: true }, webcrypto)).toBe(true);
    if (!haveOpenssl) return;
    const pem = file('big.pem', big.toString('pem'));
    const result = openssl(['verify', '-CAfile', pem, pem]);
    expect(result.output).toContain(': OK');
  });
});
