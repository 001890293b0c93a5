import { afterAll, beforeAll, describe } from 'vitest';
import { CKM, Pkcs11Token } from '../../src/hsm/pkcs11/token.ts';
import {
  createSoftHsmToken,
  type SoftHsmToken,
  softHsmAvailable,
  startPkcs11Partition,
} from '../helpers/softhsm.ts';
import { type KeyManagerUnderTest, runKeyManagerConformance } from './conformance.ts';
import { CA_USER, OFFICER, openMemoryPartition, startTestPartition } from './helpers.ts';

// The emulated partition's logic, in-process (no socket): the contract without the transport.
runKeyManagerConformance('emulated partition, in-process session', async () => {
  const { partition } = await openMemoryPartition({ name: 'conformance' });
  const officer = partition.openSession();
  await officer.login({ user: OFFICER.name, pin: OFFICER.pin });
  const user = partition.openSession();
  await user.login({ user: CA_USER.name, pin: CA_USER.pin });
  return {
    officer,
    user,
    uriFor: (label) => `hsm:partition=conformance;label=${label}`,
    close: () => partition.close(),
  };
});

// The same contract through the real `signet hsm serve` process and its socket.
runKeyManagerConformance('emulated partition process over its socket (RemotePartition)', async () => {
  const partition = await startTestPartition({ name: 'conformance' });
  return {
    officer: await partition.officer(),
    user: await partition.user(),
    uriFor: (label) => `hsm:partition=conformance;label=${label}`,
    close: () => partition.stop(),
  };
});

// The same contract with the key objects on a SoftHSM2 token (issue #25): the partition's logic
// in-process, its keys made and used through PKCS#11.
describe.runIf(softHsmAvailable())('on a SoftHSM2 token', () => {
  let token: SoftHsmToken;
  beforeAll(() => {
    token = createSoftHsmToken('conformance');
    process.env.SOFTHSM2_CONF = token.conf;
  });
  afterAll(() => token?.cleanup());

  const onToken = async (excludeMechanisms: number[] = []): Promise<KeyManagerUnderTest> => {
    const tokenKeys = await Pkcs11Token.open({
      module: token.module,
      tokenLabel: token.label,
      pin: token.pin,
      excludeMechanisms,
    });
    const { partition } = await openMemoryPartition({ name: 'conformance', tokenKeys });
    const officer = partition.openSession();
    await officer.login({ user: OFFICER.name, pin: OFFICER.pin });
    const user = partition.openSession();
    await user.login({ user: CA_USER.name, pin: CA_USER.pin });
    return {
      officer,
      user,
      uriFor: (label) => `pkcs11:token=conformance;object=${label}`,
      close: () => partition.close(),
    };
  };
  runKeyManagerConformance('PKCS#11 partition (SoftHSM2), in-process session', () => onToken(), {
    // The same token, as if its module did not offer RSA-PSS with SHA-256.
    lacking: {
      mechanism: 'rsa-pss-sha256',
      algorithm: 'rsa-2048',
      names: 'CKM_SHA256_RSA_PKCS_PSS',
      factory: () => onToken([CKM.SHA256_RSA_PKCS_PSS]),
    },
  });

  // The real `signet hsm serve --dir DIR --token-pin-file FILE` process, reached over its socket.
  runKeyManagerConformance(
    'PKCS#11 partition (SoftHSM2) process over its socket (RemotePartition)',
    async () => {
      const partition = await startPkcs11Partition({ name: 'conformance' });
      return {
        officer: await partition.officer(),
        user: await partition.user(),
        uriFor: (label) => `pkcs11:token=conformance-token;object=${label}`,
        close: () => partition.stop(),
      };
    },
  );
});
