/** The hierarchy ceremony: a root, its intermediates and the first root CRL in one run. */

import {
  type CeremonyKey,
  hasDigitalSignature,
  ROOT_PURPOSES,
  type Run,
  requireSecret,
} from '../ceremony-run.ts';
import { encodeSubject } from '../certificates.ts';
import type { CeremonyConfig } from '../config.ts';
import type { CeremonyPartition } from '../partition.ts';
import { issueRoot } from './root.ts';

export async function hierarchyCeremony(
  run: Run,
  config: Extract<CeremonyConfig, { 'ceremony-type': 'hierarchy' }>,
): Promise<void> {
  const { secrets } = run.options;
  // The online partition first: a label already taken there stops the ceremony before the root exists.
  let online: CeremonyPartition | undefined;
  const created = config.intermediates.filter((i) => i['subject-key'].key);
  if (created.length > 0) {
    const p = config['online-partition']!;
    online = await run.openPartition(
      p,
      'online',
      secrets.onlineSecret ? { secret: secrets.onlineSecret } : undefined,
      {
        officer: requireSecret(
          secrets.onlineOfficerPin,
          '--online-officer-pin-file (the online partition officer PIN)',
        ),
        user: secrets.onlineUserPin,
      },
    );
    for (const i of created) await run.refuseExistingLabel(online, i['subject-key'].key!);
  }
  const p = config['offline-partition'];
  const offline = p.create ? await run.createOfflinePartition(p) : await run.openOfflineWithShares(p, true);
  const rootProfile = config.root['certificate-profile'];
  const root = await run.createKey(
    offline,
    config.root.key,
    'root',
    ROOT_PURPOSES,
    hasDigitalSignature(rootProfile),
  );
  run.defaultSigner = root.info.label;
  await run.writePublicKey(config.root.outputs['public-key-path'], root.info.publicKey, 'root');
  const issuer = await issueRoot(run, rootProfile, root, config.root.outputs['certificate-path']);
  const rootAnchor = { der: issuer.certificate!, what: 'the root' };
  for (const [n, inter] of config.intermediates.entries()) {
    const profile = inter['certificate-profile'];
    let spki: Uint8Array;
    let made: CeremonyKey | undefined;
    const key = inter['subject-key'].key;
    if (key) {
      made = await run.createKey(
        online!,
        key,
        `intermediate-${n}`,
        ['certificate', 'crl', 'ocsp', 'other'],
        hasDigitalSignature(profile),
      );
      spki = made.info.publicKey;
      if (inter.outputs['public-key-path']) {
        await run.writePublicKey(inter.outputs['public-key-path'], spki, `intermediate ${n}`);
      }
    } else {
      spki = run.validated.inputs.intermediateKeys[n]!.spki;
    }
    const der = await run.issueCertificate({
      what: `intermediate certificate ${n} (${profile.subject['common-name']})`,
      lintProfile: 'intermediate',
      profile,
      subject: encodeSubject(profile.subject),
      publicKey: spki,
      issuer,
      signer: root,
      path: inter.outputs['certificate-path'],
      trustAnchor: rootAnchor,
    });
    if (made) made.certificates = [der, rootAnchor.der];
  }
  await run.issueCrl({
    profile: config.crl['crl-profile'],
    issuer,
    signer: root,
    path: config.crl.outputs['crl-path'],
  });
}
