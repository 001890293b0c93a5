import { createIssuerContext, createSelfIssuerContext, type IssuerContext } from '../../x509/issuer.ts';
import { encodeName } from '../../x509/names.ts';
import { type CeremonyKey, hasDigitalSignature, ROOT_PURPOSES, type Run } from '../ceremony-run.ts';
import { subjectAttributes } from '../certificates.ts';
import type { CeremonyConfig, CertificateProfile } from '../config.ts';

export async function rootCeremony(
  run: Run,
  config: Extract<CeremonyConfig, { 'ceremony-type': 'root' }>,
): Promise<void> {
  const p = config['offline-partition'];
  const offline = p.create ? await run.createOfflinePartition(p) : await run.openOfflineWithShares(p, true);
  const profile = config['certificate-profile'];
  const root = await run.createKey(offline, config.key, 'root', ROOT_PURPOSES, hasDigitalSignature(profile));
  run.defaultSigner = root.info.label;
  await run.writePublicKey(config.outputs['public-key-path'], root.info.publicKey, 'root');
  await issueRoot(run, profile, root, config.outputs['certificate-path']);
}

export async function issueRoot(
  run: Run,
  profile: CertificateProfile,
  root: CeremonyKey,
  path: string,
): Promise<IssuerContext> {
  const self = createSelfIssuerContext({
    id: root.info.label,
    subject: subjectAttributes(profile.subject),
    publicKey: root.info.publicKey,
    notBefore: new Date(profile['not-before']),
    notAfter: new Date(profile['not-after']),
    ...(profile['path-length'] !== undefined ? { pathLenConstraint: profile['path-length'] } : {}),
  });
  const der = await run.issueCertificate({
    what: 'root certificate',
    lintProfile: 'root',
    profile,
    subject: encodeName(subjectAttributes(profile.subject)),
    publicKey: root.info.publicKey,
    issuer: self,
    signer: root,
    path,
  });
  root.certificates = [der];
  return createIssuerContext({ id: root.info.label, certificate: der });
}
