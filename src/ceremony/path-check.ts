import type { Clock } from '../lib/clock.ts';
import { readCertificateFields } from '../x509/issuer.ts';
import { PathValidationError, validateCertificatePath } from '../x509/path-validation.ts';
import { CeremonyError } from './errors.ts';

/**
 * RFC 5280 §6.1 path validation of a certificate the ceremony just signed, before it is written:
 * pkijs's engine (Ed25519 included), name constraints along the path (src/x509/path-validation.ts).
 * It runs at the later of now and the certificate's notBefore, since a ceremony may sign ahead.
 */
export async function validateCeremonyPath(
  der: Uint8Array,
  anchor: Uint8Array,
  clock: Clock,
): Promise<number> {
  const notBefore = readCertificateFields(der).notBefore;
  const now = clock.now();
  try {
    const { path } = await validateCertificatePath({
      certificate: der,
      trustAnchors: [anchor],
      time: new Date(Math.max(notBefore.getTime(), now.getTime())),
      targetIsCa: true,
    });
    return path.length;
  } catch (error) {
    if (!(error instanceof PathValidationError)) throw error;
    throw new CeremonyError(
      'ceremony.path_invalid',
      `the signed certificate does not validate: ${error.message}`,
      { reason: error.reason },
      { cause: error },
    );
  }
}
