import { createPublicKey } from 'node:crypto';
import type { Clock } from '../lib/clock.ts';
import { parseSignatureAlgorithm, verifySignature } from '../x509/algorithms.ts';
import { bitStringBytes, encoding, equalBytes, readDer } from '../x509/der.ts';
import { readBasicConstraints, readCertificateFields } from '../x509/issuer.ts';
import { OID } from '../x509/oids.ts';
import { certificateDer } from '../x509/pem.ts';
import { CeremonyError } from './errors.ts';

/**
 * The check `signet issuer add --id ID --certificate FILE --key URI` makes before it activates an
 * intermediate from a ceremony: the certificate is a CA certificate for exactly the partition
 * key's public key, and its chain (through any given intermediates) reaches one of the roots
 * listed in signet.yaml, every signature verifying and every issuer a CA allowed to sign
 * certificates (RFC 5280 §6.1). Pure: no partition, no database.
 */

export interface ActivationInput {
  /** The intermediate's certificate, PEM or DER. */
  certificate: string | Uint8Array;
  /** The partition key's SubjectPublicKeyInfo, DER (KeyManager.getPublicKey). */
  keyPublicKey: Uint8Array;
  /** The trusted roots of signet.yaml, PEM or DER. */
  roots: (string | Uint8Array)[];
  /** Further CA certificates between the intermediate and a root, PEM or DER. */
  intermediates?: (string | Uint8Array)[];
  /** When given, every certificate of the chain must be valid now. */
  clock?: Clock;
}

export interface ActivationResult {
  /** DER, from the intermediate up to and including the root. */
  chain: Uint8Array[];
  /** Index into `roots` of the root the chain reached. */
  rootIndex: number;
}

interface Parsed {
  der: Uint8Array;
  fields: ReturnType<typeof readCertificateFields>;
  tbs: Uint8Array;
  signatureAlgorithm: Uint8Array;
  signature: Uint8Array;
  issuer: Uint8Array;
  subject: Uint8Array;
  spki: Uint8Array;
}

const refuse = (code: string, message: string) => new CeremonyError(code, message);

function parse(input: string | Uint8Array, what: string): Parsed {
  try {
    const der = Uint8Array.from(certificateDer(input));
    const [tbsTlv, algorithmTlv, valueTlv, ...extra] = readDer(der, { maxDepth: 16 }).children;
    if (!tbsTlv || !algorithmTlv || !valueTlv || extra.length > 0) throw new Error('not a Certificate');
    const fields = readCertificateFields(der);
    return {
      der,
      fields,
      tbs: encoding(tbsTlv),
      signatureAlgorithm: encoding(algorithmTlv),
      signature: bitStringBytes(valueTlv).bytes,
      issuer: encoding(fields.issuer),
      subject: encoding(fields.subject),
      spki: encoding(fields.spki),
    };
  } catch (error) {
    throw new CeremonyError(
      'activation.certificate_invalid',
      `${what} is not a readable X.509 certificate`,
      {},
      { cause: error },
    );
  }
}

/** RFC 5280 §4.2.1.9 and §4.2.1.3: a certificate that may issue certificates. */
function caProblem(cert: Parsed): string | undefined {
  const basic = cert.fields.extensions.get(OID.basicConstraints);
  if (!basic || !readBasicConstraints(basic.value).ca) return 'is not a CA certificate (basicConstraints cA)';
  const ku = cert.fields.extensions.get(OID.keyUsage);
  if (ku) {
    const bits = bitStringBytes(readDer(ku.value, { maxDepth: 1 })).bytes;
    // keyCertSign is bit 5 (RFC 5280 §4.2.1.3).
    if (((bits[0] ?? 0) & 0x04) === 0) return 'has no keyCertSign key usage';
  }
  return undefined;
}

function signedBy(child: Parsed, parent: Parsed): boolean {
  if (!equalBytes(child.issuer, parent.subject)) return false;
  // RFC 5280 §4.1.1.2: the outer signatureAlgorithm equals the TBS's signature field.
  if (!equalBytes(child.signatureAlgorithm, encoding(child.fields.signature))) return false;
  try {
    const algorithm = parseSignatureAlgorithm(child.fields.signature);
    const key = createPublicKey({ key: Buffer.from(parent.spki), format: 'der', type: 'spki' });
    return verifySignature(algorithm, key, child.tbs, child.signature);
  } catch {
    return false;
  }
}

export function verifyIntermediateForActivation(input: ActivationInput): ActivationResult {
  const leaf = parse(input.certificate, 'the certificate');
  const problem = caProblem(leaf);
  if (problem) throw refuse('activation.not_ca', `the certificate ${problem}`);
  if (!equalBytes(leaf.spki, Uint8Array.from(input.keyPublicKey))) {
    throw refuse(
      'activation.key_mismatch',
      "the certificate's public key is not the partition key's public key",
    );
  }
  const roots = input.roots.map((r, i) => parse(r, `trusted root ${i + 1}`));
  const pool = (input.intermediates ?? []).map((c, i) => parse(c, `intermediate ${i + 1}`));
  const now = input.clock?.now().getTime();
  const checkTime = (cert: Parsed, what: string) => {
    if (now === undefined) return;
    if (now < cert.fields.notBefore.getTime())
      throw refuse('activation.not_yet_valid', `${what} is not valid yet`);
    if (now > cert.fields.notAfter.getTime()) throw refuse('activation.expired', `${what} has expired`);
  };
  checkTime(leaf, 'the certificate');

  const chain: Parsed[] = [leaf];
  for (let depth = 0; depth < 8; depth++) {
    const current = chain[chain.length - 1]!;
    const rootIndex = roots.findIndex((root) => signedBy(current, root));
    if (rootIndex >= 0) {
      const root = roots[rootIndex]!;
      const rootProblem = caProblem(root);
      if (rootProblem) throw refuse('activation.chain_invalid', `the trusted root ${rootProblem}`);
      checkTime(root, 'the trusted root');
      checkPathLengths([...chain, root]);
      return { chain: [...chain, root].map((c) => c.der), rootIndex };
    }
    const next = pool.find((candidate) => !chain.includes(candidate) && signedBy(current, candidate));
    if (!next) break;
    const nextProblem = caProblem(next);
    if (nextProblem) throw refuse('activation.chain_invalid', `an intermediate of the chain ${nextProblem}`);
    checkTime(next, 'an intermediate of the chain');
    chain.push(next);
  }
  throw refuse(
    'activation.chain_invalid',
    "the certificate's chain does not reach a trusted root of signet.yaml (no issuer whose signature verifies)",
  );
}

/** RFC 5280 §6.1.4(m): each CA's pathLenConstraint bounds the CA certificates below it. */
function checkPathLengths(chain: Parsed[]): void {
  // chain[0] is the intermediate being activated, which will issue leaves: below chain[i] there
  // are i CA certificates (chain[0..i-1]) before the leaf.
  for (let i = 1; i < chain.length; i++) {
    const basic = chain[i]!.fields.extensions.get(OID.basicConstraints);
    const pathLen = basic ? readBasicConstraints(basic.value).pathLen : undefined;
    if (pathLen !== undefined && i > pathLen) {
      throw refuse(
        'activation.chain_invalid',
        'a pathLenConstraint of the chain is exceeded (RFC 5280 §4.2.1.9)',
      );
    }
  }
}
