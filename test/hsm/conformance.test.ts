import { runKeyManagerConformance } from './conformance.ts';
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
