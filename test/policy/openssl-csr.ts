/**
 * Real CSRs for policy tests: made by openssl, read with @peculiar/asn1-csr into the ParsedCsr
 * shape. Deliberately independent of src/x509/csr.ts, so the policy tests do not lean on the
 * code they would otherwise be checking it against.
 */

import { execFileSync } from 'node:child_process';
import { createHash, createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificationRequest } from '@peculiar/asn1-csr';
import { AsnConvert } from '@peculiar/asn1-schema';
import { BasicConstraints, ExtendedKeyUsage, Extensions, SubjectAlternativeName } from '@peculiar/asn1-x509';
import { formatIp } from '../../src/policy/ip.ts';
import type { ParsedCsr, San, SubjectAttribute, SubjectAttributeType } from '../../src/x509/types.ts';

export type KeyKind = 'ecdsa-p256' | 'ecdsa-p384' | 'rsa-2048' | 'ed25519';

const GENPKEY: Record<KeyKind, string[]> = {
  'ecdsa-p256': ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'],
  'ecdsa-p384': ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384'],
  'rsa-2048': ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'],
  ed25519: ['-algorithm', 'ed25519'],
};

const ATTRIBUTE_OIDS: Record<string, SubjectAttributeType> = {
  '2.5.4.3': 'CN',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '2.5.4.6': 'C',
  '2.5.4.8': 'ST',
  '2.5.4.7': 'L',
  '2.5.4.5': 'serialNumber',
  '1.2.840.113549.1.9.1': 'emailAddress',
  '0.9.2342.19200300.100.1.25': 'DC',
  '2.5.4.9': 'street',
  '2.5.4.17': 'postalCode',
};

/** A scratch folder with one key of each kind, made once per test file. */
export function createCsrFactory() {
  const dir = mkdtempSync(join(tmpdir(), 'signet-csr-'));
  const keys = new Map<KeyKind, string>();
  const keyFile = (kind: KeyKind) => {
    let file = keys.get(kind);
    if (!file) {
      file = join(dir, `${kind}.key`);
      execFileSync('openssl', ['genpkey', ...GENPKEY[kind], '-out', file], { stdio: 'ignore' });
      keys.set(kind, file);
    }
    return file;
  };
  let counter = 0;
  return {
    /** `subject` in openssl's -subj form ('/CN=x/O=y', '/' for none); `addext` lines as for -addext. */
    make({
      key = 'ecdsa-p256',
      subject = '/',
      addext = [],
    }: {
      key?: KeyKind;
      subject?: string;
      addext?: string[];
    }) {
      const out = join(dir, `${++counter}.der`);
      const args = ['req', '-new', '-key', keyFile(key), '-subj', subject, '-outform', 'DER', '-out', out];
      for (const line of addext) args.push('-addext', line);
      execFileSync('openssl', args, { stdio: 'pipe' });
      return new Uint8Array(readFileSync(out));
    },
    /** Writes DER as PEM to a file and returns its path (for the CLI). */
    writePem(der: Uint8Array, name: string) {
      const file = join(dir, name);
      const b64 = Buffer.from(der)
        .toString('base64')
        .replace(/(.{64})/g, '$1\n');
      writeFileSync(file, `-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n-----END CERTIFICATE REQUEST-----\n`);
      return file;
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function toParsedCsr(der: Uint8Array): ParsedCsr {
  const request = AsnConvert.parse(der, CertificationRequest);
  const info = request.certificationRequestInfo;
  const subject: SubjectAttribute[] = [];
  for (const rdn of info.subject) {
    for (const attribute of rdn) {
      const type = ATTRIBUTE_OIDS[attribute.type];
      if (!type) throw new Error(`unexpected subject attribute ${attribute.type}`);
      subject.push({ type, value: attribute.value.toString() });
    }
  }
  const spki = new Uint8Array(AsnConvert.serialize(info.subjectPKInfo));
  const key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  const details = key.asymmetricKeyDetails ?? {};
  const keyAlgorithm =
    key.asymmetricKeyType === 'ec'
      ? details.namedCurve === 'prime256v1'
        ? 'ecdsa-p256'
        : 'ecdsa-p384'
      : key.asymmetricKeyType === 'rsa'
        ? `rsa-${details.modulusLength}`
        : String(key.asymmetricKeyType);
  const sans: San[] = [];
  const extensions: ParsedCsr['extensions'] = [];
  let requestedCa: boolean | undefined;
  let requestedEku: string[] | undefined;
  for (const attribute of info.attributes) {
    if (attribute.type !== '1.2.840.113549.1.9.14') continue;
    for (const value of attribute.values) {
      const list = AsnConvert.parse(value, Extensions);
      for (const extension of list) {
        const bytes = new Uint8Array(extension.extnValue.buffer);
        if (extension.extnID === '2.5.29.17') {
          for (const name of AsnConvert.parse(bytes, SubjectAlternativeName)) {
            if (name.dNSName !== undefined) sans.push({ type: 'dns', value: name.dNSName });
            else if (name.rfc822Name !== undefined) sans.push({ type: 'email', value: name.rfc822Name });
            else if (name.uniformResourceIdentifier !== undefined) {
              sans.push({ type: 'uri', value: name.uniformResourceIdentifier });
            } else if (name.iPAddress !== undefined) {
              const raw = new Uint8Array(AsnConvert.serialize(name)).slice(2);
              sans.push({ type: 'ip', value: formatIp({ version: raw.length === 4 ? 4 : 6, bytes: raw }) });
            }
          }
          continue;
        }
        if (extension.extnID === '2.5.29.19') requestedCa = AsnConvert.parse(bytes, BasicConstraints).cA;
        if (extension.extnID === '2.5.29.37') requestedEku = [...AsnConvert.parse(bytes, ExtendedKeyUsage)];
        extensions.push({ oid: extension.extnID, critical: extension.critical, value: bytes });
      }
    }
  }
  return {
    der,
    sha256: createHash('sha256').update(der).digest('hex'),
    subject,
    sans,
    publicKey: spki,
    keyAlgorithm,
    extensions,
    ...(requestedCa === undefined ? {} : { requestedCa }),
    ...(requestedEku === undefined ? {} : { requestedEku }),
  };
}
