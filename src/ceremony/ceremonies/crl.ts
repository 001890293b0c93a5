/** The CRL ceremony: the root's CRL, numbered after the previous one. */

import { createIssuerContext } from '../../x509/issuer.ts';
import type { Run } from '../ceremony-run.ts';
import type { CeremonyConfig } from '../config.ts';
import { hasKeyUsage, KeyUsageFlags } from '../inputs.ts';

export async function crlCeremony(
  run: Run,
  config: Extract<CeremonyConfig, { 'ceremony-type': 'crl' }>,
): Promise<void> {
  const issuerCert = run.validated.inputs.issuer!;
  const offline = await run.openOfflineWithShares(config['offline-partition'], false);
  const issuerKey = await run.useIssuerKey(
    offline,
    config.issuer['key-label'],
    issuerCert.spki,
    issuerCert.keyUsage === undefined || hasKeyUsage(issuerCert, KeyUsageFlags.digitalSignature),
  );
  run.defaultSigner = issuerKey.info.label;
  issuerKey.certificates = [issuerCert.der];
  const issuer = createIssuerContext({ id: issuerKey.info.label, certificate: issuerCert.der });
  await run.issueCrl({
    profile: config['crl-profile'],
    issuer,
    signer: issuerKey,
    path: config.outputs['crl-path'],
  });
}
