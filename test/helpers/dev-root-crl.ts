import { readFileSync } from 'node:fs';
import path from 'node:path';
import { RemotePartition } from '../../src/hsm/client.ts';
import { startPartitionProcess, temporarySocketPath } from '../../src/hsm/process.ts';
import { createPartitionCrypto, getCryptoKey } from '../../src/hsm/webcrypto.ts';
import { buildCrl } from '../../src/revocation/crl-builder.ts';
import { partitionSigner } from '../../src/revocation/partition-signer.ts';
import { certificateDer } from '../../src/x509/pem.ts';

/**
 * A dev-root CRL signed in the data folder's `root` partition (which `signet serve` never opens),
 * as an offline CRL ceremony on that partition would sign it: the secrets `signet init` left in
 * DIR/secrets unseal it and log the crypto user in.
 */
export async function signDevRootCrl(
  dataDir: string,
  { number, thisUpdate, nextUpdate }: { number: bigint; thisUpdate: Date; nextUpdate: Date },
): Promise<Uint8Array> {
  const secret = new Uint8Array(readFileSync(path.join(dataDir, 'secrets', 'unseal-root')));
  const pin = readFileSync(path.join(dataDir, 'secrets', 'pin-root-ca'), 'utf8').trim();
  const rootDer = certificateDer(readFileSync(path.join(dataDir, 'certs', 'dev-root.pem'), 'utf8'));
  const socket = await temporarySocketPath();
  const child = await startPartitionProcess({
    socketPath: socket.socketPath,
    dir: path.join(dataDir, 'hsm', 'root'),
    name: 'root',
  });
  let client: RemotePartition | undefined;
  try {
    client = await RemotePartition.connect({
      socketPath: socket.socketPath,
      onConnect: async (p) => {
        if ((await p.status()).state === 'sealed') await p.unseal({ secret });
        await p.login({ user: 'ca', pin });
      },
    });
    const key = await getCryptoKey(client, { label: 'dev-root' }, { purpose: 'crl' });
    const built = await buildCrl({
      issuer: rootDer,
      signer: partitionSigner(createPartitionCrypto(client), key, 'crl'),
      number,
      thisUpdate,
      nextUpdate,
      issuingDistributionPoint: { onlyContainsCACerts: true },
    });
    return built.der;
  } finally {
    await client?.close();
    await child.stop();
    await socket.cleanup();
  }
}
