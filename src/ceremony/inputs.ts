import { readFile } from 'node:fs/promises';
import { KeyUsageFlags } from '@peculiar/asn1-x509';
import * as pkijs from 'pkijs';
import { CrlReadError, type ReadCrl, readCrl } from '../x509/crl.ts';
import { SignetCryptoEngine } from '../x509/crypto-engine.ts';
import { bitStringBytes, content, encoding, readDer } from '../x509/der.ts';
import { readBasicConstraints, readCertificateFields } from '../x509/issuer.ts';
import { inspectPublicKey } from '../x509/keys.ts';
import { decodeName, formatName } from '../x509/names.ts';
import { OID } from '../x509/oids.ts';
import { decodePem, PEM_LABEL } from '../x509/pem.ts';
import type { ConfigProblem } from './errors.ts';
import { resolvePath, sha256Hex } from './outputs.ts';
import { isoSeconds } from './transcript.ts';

/**
 * Input files a ceremony reads (issuer certificates, public keys, CSRs, certificates to revoke),
 * loaded and checked during validation so that a bad input is refused before any partition is
 * touched. A failure is a ConfigProblem at the path of the configuration key that named the file.
 */

export interface LoadedCertificate {
  path: string;
  der: Uint8Array;
  /** pkijs's view, to check a signature with (SignetCryptoEngine: Ed25519 too). */
  certificate: pkijs.Certificate;
  /** SubjectPublicKeyInfo, DER. */
  spki: Uint8Array;
  /** Partition algorithm name of the certified key (`ecdsa-p384`, `rsa-4096`, ...). */
  keyAlgorithm: string;
  notBefore: string;
  notAfter: string;
  isCa: boolean;
  pathLength?: number;
  /** undefined when the certificate has no keyUsage extension. */
  keyUsage?: number;
  /** Lowercase hex of the serial's INTEGER content octets (DESIGN.md "Serials"). */
  serial: string;
}

export interface LoadedPublicKey {
  path: string;
  spki: Uint8Array;
  keyAlgorithm: string;
  /** From a CSR: its subject DN as RFC 4514 text (for information; the profile decides the subject). */
  csrSubject?: string;
}

export class InputProblem extends Error {
  constructor(readonly problem: ConfigProblem) {
    super(problem.message);
  }
}

async function read(baseDir: string, path: string, at: string): Promise<Buffer> {
  try {
    return await readFile(resolvePath(baseDir, path));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new InputProblem({
      path: at,
      code: code === 'ENOENT' ? 'ceremony.config.input_missing' : 'ceremony.config.input_unreadable',
      message: code === 'ENOENT' ? `${path} does not exist` : `cannot read ${path} (${code ?? 'error'})`,
    });
  }
}

const invalid = (at: string, message: string) =>
  new InputProblem({ path: at, code: 'ceremony.config.input_invalid', message });

function derOf(data: Buffer, labels: string[], at: string, path: string): Uint8Array {
  const text = data.toString('latin1');
  if (text.includes('-----BEGIN')) {
    try {
      return decodePem(text, labels).der;
    } catch (error) {
      throw invalid(at, `${path}: ${(error as Error).message}`);
    }
  }
  return new Uint8Array(data);
}

function keyAlgorithm(spki: Uint8Array, at: string, path: string): string {
  try {
    return inspectPublicKey(spki).name;
  } catch (error) {
    throw invalid(at, `${path}: the public key is not acceptable: ${(error as Error).message}`);
  }
}

/** RFC 5280 §4.2.1.3 named bits as KeyUsageFlags (bit n is flag 1 << n). */
function keyUsageFlags(value: Uint8Array): number {
  const bits = bitStringBytes(readDer(value, { maxDepth: 1 })).bytes;
  let flags = 0;
  for (let n = 0; n < 9; n++) if (((bits[n >> 3] ?? 0) & (0x80 >> (n & 7))) !== 0) flags |= 1 << n;
  return flags;
}

export async function loadCertificate(baseDir: string, path: string, at: string): Promise<LoadedCertificate> {
  const data = await read(baseDir, path, at);
  const der = derOf(data, [PEM_LABEL.certificate], at, path);
  let fields: ReturnType<typeof readCertificateFields>;
  let certificate: pkijs.Certificate;
  let basic: { ca: boolean; pathLen?: number } | undefined;
  let keyUsage: number | undefined;
  try {
    fields = readCertificateFields(der);
    certificate = pkijs.Certificate.fromBER(der);
    const basicExtension = fields.extensions.get(OID.basicConstraints);
    basic = basicExtension ? readBasicConstraints(basicExtension.value) : undefined;
    const ku = fields.extensions.get(OID.keyUsage);
    keyUsage = ku ? keyUsageFlags(ku.value) : undefined;
  } catch {
    throw invalid(at, `${path} is not an X.509 certificate`);
  }
  const spki = Uint8Array.from(encoding(fields.spki));
  return {
    path,
    der,
    certificate,
    spki,
    keyAlgorithm: keyAlgorithm(spki, at, path),
    notBefore: isoSeconds(fields.notBefore),
    notAfter: isoSeconds(fields.notAfter),
    isCa: basic?.ca === true,
    ...(basic?.pathLen !== undefined ? { pathLength: basic.pathLen } : {}),
    ...(keyUsage !== undefined ? { keyUsage } : {}),
    serial: Buffer.from(content(fields.serial))
      .toString('hex')
      .replace(/^(00)+(?=.)/, ''),
  };
}

export async function loadPublicKey(baseDir: string, path: string, at: string): Promise<LoadedPublicKey> {
  const data = await read(baseDir, path, at);
  const spki = derOf(data, [PEM_LABEL.publicKey], at, path);
  return { path, spki, keyAlgorithm: keyAlgorithm(spki, at, path) };
}

/** A CSR proves possession of its key (RFC 2986 §3): its signature must verify. */
export async function loadCsr(baseDir: string, path: string, at: string): Promise<LoadedPublicKey> {
  const data = await read(baseDir, path, at);
  const der = derOf(data, [PEM_LABEL.csr, PEM_LABEL.legacyCsr], at, path);
  let csr: pkijs.CertificationRequest;
  try {
    csr = pkijs.CertificationRequest.fromBER(der);
  } catch {
    throw invalid(at, `${path} is not a PKCS#10 certificate request`);
  }
  let verified = false;
  try {
    verified = await csr.verify(new SignetCryptoEngine());
  } catch {
    verified = false;
  }
  if (!verified) throw invalid(at, `${path}: the CSR's signature does not verify (RFC 2986 §3)`);
  const spki = new Uint8Array(csr.subjectPublicKeyInfo.toSchema().toBER());
  let csrSubject: string | undefined;
  try {
    csrSubject = formatName(decodeName(readDer(new Uint8Array(csr.subject.toSchema().toBER()))));
  } catch {
    csrSubject = undefined;
  }
  return {
    path,
    spki,
    keyAlgorithm: keyAlgorithm(spki, at, path),
    ...(csrSubject !== undefined ? { csrSubject } : {}),
  };
}

/** A CRL published before (PEM `X509 CRL` or DER), which the new one follows; `fileSha256` of the file as read. */
export async function loadCrl(
  baseDir: string,
  path: string,
  at: string,
): Promise<ReadCrl & { fileSha256: string }> {
  const data = await read(baseDir, path, at);
  const der = derOf(data, [PEM_LABEL.crl, 'CRL'], at, path);
  try {
    return { ...readCrl(der), fileSha256: sha256Hex(data) };
  } catch (error) {
    if (error instanceof CrlReadError) throw invalid(at, `${path} is not a CRL: ${error.message}`);
    throw error;
  }
}

export const hasKeyUsage = (c: LoadedCertificate, flag: KeyUsageFlags) =>
  c.keyUsage === undefined ? false : (c.keyUsage & flag) !== 0;

export { KeyUsageFlags };
