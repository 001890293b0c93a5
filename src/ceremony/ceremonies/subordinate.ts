import { encoding } from '../../x509/der.ts';
import { readCertificateFields } from '../../x509/issuer.ts';
import { openIssuer, type Run } from '../ceremony-run.ts';
import { encodeSubject } from '../certificates.ts';
import type { CeremonyConfig, CertificateProfile } from '../config.ts';

export async function subordinateCeremony(
  run: Run,
  config: Extract<CeremonyConfig, { 'ceremony-type': 'intermediate' | 'cross-certificate' }>,
): Promise<void> {
  const { issuerCert, issuerKey, issuer } = await openIssuer(run, config);
  const profile = config['certificate-profile'];
  if (config['ceremony-type'] === 'intermediate') {
    const subject = run.validated.inputs.subjectKey!;
    await run.issueCertificate({
      what: 'intermediate certificate',
      lintProfile: 'intermediate',
      profile,
      subject: encodeSubject((profile as CertificateProfile).subject),
      publicKey: subject.spki,
      issuer,
      signer: issuerKey,
      path: config.outputs['certificate-path'],
      trustAnchor: { der: issuerCert.der, what: 'the issuer certificate' },
    });
  } else {
    const other = run.validated.inputs.subjectCertificate!;
    await run.issueCertificate({
      what: 'cross-certificate',
      lintProfile: 'intermediate',
      profile,
      // The other CA's subject Name byte for byte, so chains built by name still match (RFC 5280 §7.1).
      subject: encoding(readCertificateFields(other.der).subject),
      publicKey: other.spki,
      issuer,
      signer: issuerKey,
      path: config.outputs['certificate-path'],
      trustAnchor: { der: issuerCert.der, what: 'the issuer certificate' },
    });
  }
}
