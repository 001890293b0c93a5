import { z } from 'zod';
import type { EmulatedPartition, PartitionSession } from '../partition.ts';
import { nextVersion, recordFailure } from '../replication/versions.ts';
import { definePartitionOp, type PartitionOp } from '../server.ts';
import type { PartitionCustody } from '../store.ts';
import { HsmError } from '../types.ts';

/**
 * Operations custody adds to the partition's socket (server.ts `extensions`); the server checks
 * access and audits each call like the built-in ones.
 */

const pin = z.string().max(1024);

/**
 * C_SetPIN: the logged-in user changes their own PIN, proving the old one. A wrong old PIN counts
 * towards the lock exactly as a failed login does, so changePin cannot be used to guess PINs
 * around the lockout.
 */
export async function changeOwnPin(
  partition: EmulatedPartition,
  custody: Pick<PartitionCustody, 'verifyPin' | 'hashPin' | 'maxFailedLogins'>,
  session: PartitionSession,
  { oldPin, newPin }: { oldPin: string; newPin: string },
): Promise<void> {
  const me = session.loggedInAs;
  if (!me) throw new HsmError('CKR_USER_NOT_LOGGED_IN', 'log in first');
  const store = partition.requireStore();
  const pinHash = await custody.hashPin(newPin);
  const limit = custody.maxFailedLogins ?? partition.options.maxFailedLogins ?? 5;
  const refusal = await partition.serialLogin(me.name, async () => {
    const record = await store.getUser(me.name);
    if (!record) throw new HsmError('CKR_USER_NOT_LOGGED_IN', `user ${me.name} no longer exists`);
    if (record.locked)
      throw new HsmError('CKR_PIN_LOCKED', `user ${me.name} is locked; the officer must unlock it`);
    if (!(await custody.verifyPin(record, oldPin))) {
      const failed = recordFailure(record, partition.memberId(), limit);
      await store.putUser(failed);
      return failed.locked
        ? new HsmError('CKR_PIN_LOCKED', `wrong PIN; user ${me.name} is now locked`)
        : new HsmError('CKR_PIN_INCORRECT', 'the current PIN is wrong');
    }
    await store.putUser(nextVersion(record, partition.memberId(), { pinHash }));
    return undefined;
  });
  // Reported to the cluster before the answer, as a failed login is (issue #23).
  await partition.replication?.changed();
  if (refusal) throw refusal;
}

export function createCustodyOps(
  partition: EmulatedPartition,
  custody: Pick<PartitionCustody, 'verifyPin' | 'hashPin' | 'maxFailedLogins'>,
): Record<string, PartitionOp<never>> {
  return {
    changePin: definePartitionOp({
      access: 'any',
      args: z.strictObject({ oldPin: pin, newPin: pin }),
      run: async (session, args) => {
        await changeOwnPin(partition, custody, session, args);
        return null;
      },
    }),
  };
}
