import { type Clock, systemClock } from '../lib/clock.ts';
import { bitStringBytes, encoding, equalBytes, readDer } from '../x509/der.ts';
import { readBasicConstraints, readCertificateFields } from '../x509/issuer.ts';
import { OID } from '../x509/oids.ts';
import { PathValidationError, validateCertificatePath } from '../x509/path-validation.ts';
import { certificateDer } from '../x509/pem.ts';
import { CeremonyError } from './errors.ts';

/**
 * The check `signet issuer add --id ID --certificate FILE --key URI` makes before it activates an
 * intermediate from a ceremony: the certificate is a CA certificate for exactly the partition
 * key's public key, and its chain (through any given intermediates) validates to one of the roots
 * listed in signet.yaml by RFC 5280 §6.1 path validation (src/x509/path-validation.ts: pkijs's
 * engine, every signature, validity, every issuer a CA with keyCertSign, path lengths, and the
 * name constraints of every CA above it). Pure: no partition, no database.
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
  /** Every certificate of the chain must be valid now; default the system clock. */
  clock?: Clock;
}

export interface ActivationResult {
  /** DER, from the intermediate up to and including the root. */
  chain: Uint8Array[];
  /** Index into `roots` of the root the chain reached. */
  rootIndex: number;
}

const refuse = (code: string, message: string) => new CeremonyError(code, message);

function parse(input: string | Uint8Array, what: string) {
  try {
    const der = Uint8Array.from(certificateDer(input));
    return { der, fields: readCertificateFields(der) };
  } catch (error) {
    throw new CeremonyError(
      'activation.certificate_invalid',
      `${what} is not a readable X.509 certificate`,
      {},
      { cause: error },
    );
  }
}

/** Runs `read` over a parsed certificate's extensions; a malformed one refuses the certificate. */
function readable<T>(read: () => T, what: string): T {
  try {
    return read();
  } catch (error) {
    throw new CeremonyError(
      'activation.certificate_invalid',
      `${what} has a malformed extension: ${(error as Error).message}`,
      {},
      { cause: error },
    );
  }
}

/** RFC 5280 §4.2.1.9 and §4.2.1.3: a certificate that may issue certificates. */
function caProblem(fields: ReturnType<typeof readCertificateFields>): string | undefined {
  const basic = fields.extensions.get(OID.basicConstraints);
  if (!basic || !readBasicConstraints(basic.value).ca) return 'is not a CA certificate (basicConstraints cA)';
  const ku = fields.extensions.get(OID.keyUsage);
  if (ku) {
    const bits = bitStringBytes(readDer(ku.value, { maxDepth: 1 })).bytes;
    // keyCertSign is bit 5 (RFC 5280 §4.2.1.3).
    if (((bits[0] ?? 0) & 0x04) === 0) return 'has no keyCertSign key usage';
  }
  return undefined;
}

const ACTIVATION_CODE: Partial<Record<PathValidationError['reason'], string>> = {
  expired: 'activation.expired',
  not_yet_valid: 'activation.not_yet_valid',
  malformed: 'activation.certificate_invalid',
};

export async function verifyIntermediateForActivation(input: ActivationInput): Promise<ActivationResult> {
  const leaf = parse(input.certificate, 'the certificate');
  const problem = readable(() => caProblem(leaf.fields), 'the certificate');
  if (problem) throw refuse('activation.not_ca', `the certificate ${problem}`);
  if (!equalBytes(encoding(leaf.fields.spki), Uint8Array.from(input.keyPublicKey))) {
    throw refuse(
      'activation.key_mismatch',
      "the certificate's public key is not the partition key's public key",
    );
  }
  const roots = input.roots.map((r, i) => parse(r, `trusted root ${i + 1}`).der);
  const intermediates = (input.intermediates ?? []).map((c, i) => parse(c, `intermediate ${i + 1}`).der);
  try {
    const validated = await validateCertificatePath({
      certificate: leaf.der,
      intermediates,
      trustAnchors: roots,
      time: (input.clock ?? systemClock).now(),
      targetIsCa: true,
    });
    return { chain: validated.path, rootIndex: validated.anchorIndex };
  } catch (error) {
    if (!(error instanceof PathValidationError)) throw error;
    throw new CeremonyError(
      ACTIVATION_CODE[error.reason] ?? 'activation.chain_invalid',
      error.reason === 'no_path'
        ? `the certificate's chain does not reach a trusted root of signet.yaml: ${error.message}`
        : error.message,
      { reason: error.reason },
      { cause: error },
    );
  }
}
