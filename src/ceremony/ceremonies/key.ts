import type { UnsealRequest } from '../../hsm/types.ts';
import { PEM_LABEL, toPem } from '../../x509/pem.ts';
import { type Run, requireSecret } from '../ceremony-run.ts';
import type { CeremonyConfig } from '../config.ts';
import { describeShare } from '../partition.ts';

export async function keyCeremony(
  run: Run,
  config: Extract<CeremonyConfig, { 'ceremony-type': 'key' }>,
): Promise<void> {
  const p = config.partition;
  const { shares = [], secret, officerPin, userPin } = run.options.secrets;
  let unseal: UnsealRequest | undefined;
  if (shares.length > 0) {
    run.rec.custodians.push({
      partition: p.name,
      threshold: 0,
      shares: 0,
      used: shares.map((s) => describeShare(s.bytes)),
    });
    unseal = { shares: shares.map((s) => s.bytes) };
  } else if (secret) {
    unseal = { secret };
  }
  const partition = await run.openPartition(p, 'key', unseal, {
    officer: requireSecret(officerPin, '--officer-pin-file (the partition officer PIN)'),
    // The new key signs this ceremony's transcript, which needs the crypto user.
    user: requireSecret(userPin, '--pin-file (the partition user PIN)'),
  });
  // The new key has no certificate yet; it proves possession by signing this transcript.
  const key = await run.createKey(
    partition,
    config.key,
    'new',
    ['certificate', 'crl', 'ocsp', 'other'],
    true,
  );
  run.defaultSigner = key.info.label;
  await run.writePublicKey(config.outputs['public-key-path'], key.info.publicKey, 'new');
  run.log(`KEY URI: ${key.info.uri}`);
  run.log(toPem(key.info.publicKey, PEM_LABEL.publicKey).trimEnd());
}
