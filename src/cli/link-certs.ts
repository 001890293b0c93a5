import { createPrivateKey, generateKeyPairSync, type KeyObject, sign, X509Certificate } from 'node:crypto';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import { CERTIFICATE_SIGNATURE_ALGORITHMS } from '../x509/algorithms.ts';
import {
  assembleCertificate,
  encodeAuthorityKeyIdentifier,
  encodeBasicConstraints,
  encodeExtendedKeyUsage,
  encodeExtension,
  encodeKeyUsage,
  encodeTbsCertificate,
  generateSerial,
} from '../x509/certificate.ts';
import { subjectKeyIdentifier } from '../x509/issuer.ts';
import { canonicalIp, encodeGeneralNames, encodeName } from '../x509/names.ts';
import { OID } from '../x509/oids.ts';
import { certificateToPem } from '../x509/pem.ts';
import type { KeyUsageName, San } from '../x509/types.ts';

/**
 * `signet init --partition-listen` (issue #22): a small link CA and the certificates of one
 * partition member (server) and of the CA node (client), for a dev setup whose partition is
 * reached over mutual TLS. Production links use certificates from the operator's own PKI.
 * Keys are P-256, written mode 0600; the link CA's key stays beside them to issue more.
 */
export interface LinkFiles {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

const DAY_MS = 86_400_000;
const ALGORITHM = CERTIFICATE_SIGNATURE_ALGORITHMS['ecdsa-with-SHA256'];

interface Made {
  der: Uint8Array;
  spki: Uint8Array;
  privateKey: KeyObject;
}

/** One certificate signed by `issuer` (or by its own key when issuer is absent). */
function certificate(options: {
  name: string;
  issuer?: Made & { name: string };
  notBefore: Date;
  notAfter: Date;
  ca: boolean;
  keyUsage: KeyUsageName[];
  eku?: string[];
  sans?: San[];
}): Made {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }));
  const subject = encodeName([
    { type: 'O', value: 'Signet development' },
    { type: 'CN', value: options.name },
  ]);
  const issuerName = options.issuer
    ? encodeName([
        { type: 'O', value: 'Signet development' },
        { type: 'CN', value: options.issuer.name },
      ])
    : subject;
  const extensions = [
    encodeExtension(
      OID.basicConstraints,
      true,
      encodeBasicConstraints(options.ca, options.ca ? 0 : undefined),
    ),
    encodeExtension(OID.keyUsage, true, encodeKeyUsage(options.keyUsage)),
    encodeExtension(OID.subjectKeyIdentifier, false, octets(subjectKeyIdentifier(spki))),
    ...(options.issuer
      ? [
          encodeExtension(
            OID.authorityKeyIdentifier,
            false,
            encodeAuthorityKeyIdentifier(subjectKeyIdentifier(options.issuer.spki)),
          ),
        ]
      : []),
    ...(options.eku ? [encodeExtension(OID.extKeyUsage, false, encodeExtendedKeyUsage(options.eku))] : []),
    ...(options.sans ? [encodeExtension(OID.subjectAltName, false, encodeGeneralNames(options.sans))] : []),
  ];
  const tbs = encodeTbsCertificate({
    serial: generateSerial(),
    signatureAlgorithm: ALGORITHM.identifier,
    issuer: issuerName,
    notBefore: options.notBefore,
    notAfter: options.notAfter,
    subject,
    publicKey: spki,
    extensions,
  });
  // ECDSA-Sig-Value is DER (RFC 5480 section 2.2 via RFC 3279), node's default encoding.
  const signature = sign('sha256', tbs, options.issuer?.privateKey ?? privateKey);
  return { der: assembleCertificate(tbs, ALGORITHM.identifier, new Uint8Array(signature)), spki, privateKey };
}

const sansOf = (hosts: string[]): San[] =>
  hosts.map((host) =>
    isIP(host)
      ? { type: 'ip', value: canonicalIp(host) ?? host }
      : { type: 'dns', value: host.toLowerCase() },
  );

/**
 * The certificate of one more cluster member (issue #23), issued by the link CA `signet init
 * --partition-listen` made (its ca.crt and ca.key in `linkDir`): serverAuth for the CA nodes and
 * the other members that connect to it, clientAuth for its own links to the other members.
 * Answers the PEM of the certificate and of its key.
 */
export function issueMemberCertificate(options: {
  caCert: string;
  caKey: string;
  name: string;
  hosts: string[];
  now?: Date;
  validityDays?: number;
}): { cert: string; key: string } {
  const now = options.now ?? new Date();
  const notBefore = new Date(Math.floor(now.getTime() / 1000) * 1000 - 60_000);
  const notAfter = new Date(notBefore.getTime() + (options.validityDays ?? 825) * DAY_MS);
  const caCert = new X509Certificate(options.caCert);
  const issuer = {
    name: 'Signet partition link CA',
    der: new Uint8Array(caCert.raw),
    spki: new Uint8Array(caCert.publicKey.export({ type: 'spki', format: 'der' })),
    privateKey: createPrivateKey(options.caKey),
  };
  const made = certificate({
    name: options.name,
    issuer,
    notBefore,
    notAfter,
    ca: false,
    keyUsage: ['digitalSignature'],
    eku: ['serverAuth', 'clientAuth'],
    sans: sansOf(options.hosts),
  });
  return {
    cert: certificateToPem(made.der),
    key: made.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

/** SubjectKeyIdentifier ::= KeyIdentifier (OCTET STRING). */
function octets(value: Uint8Array): Uint8Array {
  return new Uint8Array([0x04, value.length, ...value]);
}

async function writeFileOnce(file: string, content: string, mode: number): Promise<void> {
  await writeFile(file, content, { mode, flag: 'wx' });
  await chmod(file, mode);
}

export async function writeLinkCertificates(options: {
  dir: string;
  /** Names the partition's certificate is valid for (the host of its tls:// address). */
  hosts: string[];
  now?: Date;
  validityDays?: number;
}): Promise<LinkFiles> {
  const now = options.now ?? new Date();
  const notBefore = new Date(Math.floor(now.getTime() / 1000) * 1000 - 60_000);
  const notAfter = new Date(notBefore.getTime() + (options.validityDays ?? 825) * DAY_MS);
  await mkdir(options.dir, { recursive: true, mode: 0o700 });
  await chmod(options.dir, 0o700);

  const caName = 'Signet partition link CA';
  const ca = {
    name: caName,
    ...certificate({ name: caName, notBefore, notAfter, ca: true, keyUsage: ['keyCertSign', 'cRLSign'] }),
  };
  const hosts = [...new Set(options.hosts)];
  const server = certificate({
    name: `partition ${hosts[0] ?? 'localhost'}`,
    issuer: ca,
    notBefore,
    notAfter,
    ca: false,
    keyUsage: ['digitalSignature'],
    // clientAuth too: as a cluster member (issue #23) it presents this certificate to the other members.
    eku: ['serverAuth', 'clientAuth'],
    sans: sansOf(hosts),
  });
  const client = certificate({
    name: 'Signet CA node',
    issuer: ca,
    notBefore,
    notAfter,
    ca: false,
    keyUsage: ['digitalSignature'],
    eku: ['clientAuth'],
  });
  const pem = (made: Made) => certificateToPem(made.der);
  const keyPem = (made: Made) => made.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

  const file = (name: string) => path.join(options.dir, name);
  const files: LinkFiles = {
    dir: options.dir,
    caCert: file('ca.crt'),
    caKey: file('ca.key'),
    serverCert: file('server.crt'),
    serverKey: file('server.key'),
    clientCert: file('client.crt'),
    clientKey: file('client.key'),
  };
  await writeFileOnce(files.caCert, pem(ca), 0o644);
  await writeFileOnce(files.caKey, keyPem(ca), 0o600);
  await writeFileOnce(files.serverCert, pem(server), 0o644);
  await writeFileOnce(files.serverKey, keyPem(server), 0o600);
  await writeFileOnce(files.clientCert, pem(client), 0o644);
  await writeFileOnce(files.clientKey, keyPem(client), 0o600);
  return files;
}
