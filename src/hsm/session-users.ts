import { USER_NAME } from './key-uri.ts';
import type { EmulatedPartition } from './partition.ts';
import { bad, MAX_PIN_OCTETS } from './partition-requests.ts';
import { nextVersion, recordFailure } from './replication/versions.ts';
import type { AuditEvent, UserRecord } from './store.ts';
import { HsmError, ROLES, type Role, type UserInfo } from './types.ts';

/**
 * The partition's users as a session sees them: the login check, and the crypto officer's
 * administration of users (PartitionSession runs each through perform(), which audits it).
 */

/**
 * Checks a user's PIN (counting failures, locking after too many); answers the user's role. In a
 * cluster a failure is counted for this member and reported to the others before the answer
 * (issue #23), so the limit holds for the cluster, not per member.
 */
export async function checkLogin(partition: EmulatedPartition, name: string, pin: string): Promise<Role> {
  const store = partition.requireStore();
  const limit = partition.options.maxFailedLogins ?? 5;
  let refusal: HsmError | undefined;
  let changed = false;
  const role = await partition.serialLogin(name, async () => {
    const record = await store.getUser(name);
    if (!record) {
      const dummy = await partition.dummy();
      if (dummy) await partition.options.verifyPin(dummy, pin);
      throw new HsmError('CKR_PIN_INCORRECT', 'wrong user or PIN');
    }
    if (record.locked)
      throw new HsmError('CKR_PIN_LOCKED', `user ${name} is locked; the officer must unlock it`);
    if (!(await partition.options.verifyPin(record, pin))) {
      const failed = recordFailure(record, partition.memberId(), limit);
      await store.putUser(failed);
      changed = true;
      refusal = failed.locked
        ? new HsmError('CKR_PIN_LOCKED', `wrong PIN; user ${name} is now locked`)
        : new HsmError('CKR_PIN_INCORRECT', 'wrong user or PIN');
      return undefined;
    }
    if (record.failedLogins !== 0) {
      await store.putUser(nextVersion(record, partition.memberId()));
      changed = true;
    }
    return record.role;
  });
  // Outside the per-user queue: a peer merging this user's record must not wait behind it.
  if (changed) await partition.replication?.changed();
  if (refusal || role === undefined) throw refusal;
  return role;
}

export async function createUser(
  partition: EmulatedPartition,
  event: AuditEvent,
  request: { name: string; role: Role; pin: string },
): Promise<UserInfo> {
  const name = checkUserName(request?.name, event);
  if (!(ROLES as readonly string[]).includes(request.role))
    throw bad(`role must be one of ${ROLES.join(', ')}`);
  const pinHash = await hashPin(partition, request.pin);
  const store = partition.requireStore();
  if (await store.getUser(name)) throw new HsmError('CKR_OBJECT_EXISTS', `user ${name} exists`);
  // A name deleted before starts above its deletion, so the cluster keeps the new user.
  const deleted = await store.userTombstone?.(name);
  const record = nextVersion(
    { name, role: request.role, pinHash, failedLogins: 0, locked: false, version: deleted?.version ?? 0 },
    partition.memberId(),
  );
  await store.putUser(record);
  await partition.replication?.changed();
  return userInfo(record);
}

export async function listUsers(partition: EmulatedPartition): Promise<UserInfo[]> {
  const users = await partition.requireStore().listUsers();
  return users.map(userInfo).sort((a, b) => a.name.localeCompare(b.name));
}

export function unlockUser(
  partition: EmulatedPartition,
  event: AuditEvent,
  request: { name: string },
): Promise<UserInfo> {
  const name = checkUserName(request?.name, event);
  return partition
    .serialLogin(name, async () => {
      const record = await existingUser(partition, name);
      const unlocked = nextVersion(record, partition.memberId());
      await partition.requireStore().putUser(unlocked);
      return userInfo(unlocked);
    })
    .then(async (info) => {
      await partition.replication?.changed();
      return info;
    });
}

/** Sets a user's PIN (C_InitPIN); also clears a lock, the usual way back for a locked user. */
export async function setUserPin(
  partition: EmulatedPartition,
  event: AuditEvent,
  request: { name: string; pin: string },
): Promise<void> {
  const name = checkUserName(request?.name, event);
  const pinHash = await hashPin(partition, request.pin);
  await partition.serialLogin(name, async () => {
    const record = await existingUser(partition, name);
    await partition.requireStore().putUser(nextVersion(record, partition.memberId(), { pinHash }));
  });
  await partition.replication?.changed();
}

/** Deletes a user; `self` (the officer asking) and the last officer stay. */
export async function deleteUser(
  partition: EmulatedPartition,
  event: AuditEvent,
  request: { name: string },
  self: string | undefined,
): Promise<void> {
  const name = checkUserName(request?.name, event);
  const store = partition.requireStore();
  if (!store.deleteUser) throw new HsmError('CKR_FUNCTION_NOT_SUPPORTED', 'this store cannot delete users');
  if (name === self) throw new HsmError('CKR_OPERATION_NOT_PERMITTED', 'an officer cannot delete itself');
  const record = await existingUser(partition, name);
  if (record.role === 'officer') {
    const officers = (await store.listUsers()).filter((u) => u.role === 'officer');
    if (officers.length <= 1) throw new HsmError('CKR_OPERATION_NOT_PERMITTED', 'the last officer stays');
  }
  await store.deleteUser(name, { version: (record.version ?? 0) + 1, origin: partition.memberId() });
  await partition.replication?.changed();
}

function checkUserName(name: unknown, event: AuditEvent): string {
  if (typeof name !== 'string' || !USER_NAME.test(name))
    throw bad('user name must match [a-z0-9][a-z0-9._-]{0,31}');
  event.subject = name;
  return name;
}

async function existingUser(partition: EmulatedPartition, name: string): Promise<UserRecord> {
  const record = await partition.requireStore().getUser(name);
  if (!record) throw bad(`no user ${name}`);
  return record;
}

async function hashPin(partition: EmulatedPartition, pin: unknown): Promise<string> {
  const hashPin = partition.options.hashPin;
  if (!hashPin) throw new HsmError('CKR_FUNCTION_NOT_SUPPORTED', 'this partition cannot set PINs');
  const min = partition.options.minPinLength ?? 8;
  if (typeof pin !== 'string' || [...pin].length < min || Buffer.byteLength(pin) > MAX_PIN_OCTETS) {
    throw new HsmError('CKR_PIN_LEN_RANGE', `a PIN has ${min} to ${MAX_PIN_OCTETS} characters`);
  }
  return hashPin(pin);
}

const userInfo = (record: UserRecord): UserInfo => ({
  name: record.name,
  role: record.role,
  failedLogins: record.failedLogins,
  locked: record.locked,
});
