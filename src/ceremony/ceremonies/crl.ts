/** The CRL ceremony: the root's CRL, numbered after the previous one. */

import { openIssuer, type Run } from '../ceremony-run.ts';
import type { CeremonyConfig } from '../config.ts';

export async function crlCeremony(
  run: Run,
  config: Extract<CeremonyConfig, { 'ceremony-type': 'crl' }>,
): Promise<void> {
  const { issuerKey, issuer } = await openIssuer(run, config);
  await run.issueCrl({
    profile: config['crl-profile'],
    issuer,
    signer: issuerKey,
    path: config.outputs['crl-path'],
  });
}
