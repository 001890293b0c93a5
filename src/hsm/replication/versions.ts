import { createHash } from 'node:crypto';
import type { UserRecord } from '../store.ts';

/**
 * How members of a cluster agree on users and keys (issue #23), as pure functions so every member
 * decides the same way whatever the order changes reach it.
 *
 * A user record carries a version and the id of the member that wrote it. A change made by the
 * officer or by a successful login (create, PIN, unlock, the failure count cleared) writes the next
 * version; of two records the higher version wins, then the higher member id: deterministic on
 * every member. Failed logins do not write a version: each member counts its own failures against
 * the current version (`failures`, member id -> count), and two copies of one version merge by the
 * highest count per member, so no failure is lost when members count at the same time and the
 * lockout limit holds for the sum over the cluster, not per member.
 *
 * Keys are immutable once created, so a key set merges by union, except that a tombstone (a key
 * destroyed on some member) always wins: a member that was down never brings a destroyed key back.
 */

/** Who wrote a user version; '' on a partition that is not in a cluster. */
export interface VersionStamp {
  version: number;
  origin: string;
}

export const stampOf = (user: Pick<UserRecord, 'version' | 'origin'>): VersionStamp => ({
  version: user.version ?? 0,
  origin: user.origin ?? '',
});

/** Negative when a is older than b, positive when newer, 0 for the same version by the same member. */
export function compareStamps(a: VersionStamp, b: VersionStamp): number {
  if (a.version !== b.version) return a.version - b.version;
  return a.origin < b.origin ? -1 : a.origin > b.origin ? 1 : 0;
}

/** Failures per member, a record written before clusters counting as the writer's own. */
export function failuresOf(user: UserRecord): Record<string, number> {
  if (user.failures) return { ...user.failures };
  return user.failedLogins > 0 ? { [user.origin ?? '']: user.failedLogins } : {};
}

const total = (failures: Record<string, number>) => Object.values(failures).reduce((sum, n) => sum + n, 0);

/** One more failed login counted by `member`; locked once the cluster-wide count reaches `limit`. */
export function recordFailure(user: UserRecord, member: string, limit: number): UserRecord {
  const failures = failuresOf(user);
  failures[member] = (failures[member] ?? 0) + 1;
  const failedLogins = total(failures);
  return { ...user, failures, failedLogins, locked: user.locked || failedLogins >= limit };
}

/**
 * The next version of a user, written by `member`: the change applied, the failure count and the
 * lock cleared unless the change sets them.
 */
export function nextVersion(user: UserRecord, member: string, change: Partial<UserRecord> = {}): UserRecord {
  return {
    ...user,
    failedLogins: 0,
    locked: false,
    failures: {},
    ...change,
    version: (user.version ?? 0) + 1,
    origin: member,
  };
}

/**
 * The record a member keeps when it holds `local` and a peer sends `remote` (either may be
 * missing, or be a deletion's tombstone). Answers undefined when `local` stays as it is.
 */
export function mergeUser(
  local: UserRecord | VersionStamp | undefined,
  remote: UserRecord | VersionStamp,
  limit: number,
): UserRecord | VersionStamp | undefined {
  if (local === undefined) return remote;
  const order = compareStamps(stampOf(remote), stampOf(local));
  if (order < 0) return undefined;
  if (order > 0) return remote;
  if (!isUser(local) || !isUser(remote)) return undefined;
  // One version, counted on by several members: highest count per member.
  const failures = failuresOf(local);
  let changed = false;
  for (const [member, count] of Object.entries(failuresOf(remote))) {
    if (count > (failures[member] ?? 0)) {
      failures[member] = count;
      changed = true;
    }
  }
  const failedLogins = total(failures);
  const locked = local.locked || remote.locked || failedLogins >= limit;
  if (!changed && locked === local.locked) return undefined;
  return { ...local, failures, failedLogins, locked };
}

export function isUser(value: UserRecord | VersionStamp): value is UserRecord {
  return 'name' in value;
}

/** What a member holds, as its peers compare it. */
export interface KeySetSummary {
  /** Ids of the keys it holds. */
  keys: string[];
  /** Ids of keys destroyed (on it or anywhere it heard of). */
  tombstones: string[];
}

/** What a member must do to hold what a peer holds: fetch keys it lacks, destroy keys the peer destroyed. */
export function planKeys(
  local: KeySetSummary,
  remote: KeySetSummary,
): { fetch: string[]; destroy: string[]; bury: string[] } {
  const mine = new Set(local.keys);
  const buried = new Set(local.tombstones);
  const theirTombstones = new Set(remote.tombstones);
  const fetch = remote.keys.filter((id) => !mine.has(id) && !buried.has(id) && !theirTombstones.has(id));
  const destroy = local.keys.filter((id) => theirTombstones.has(id));
  const bury = remote.tombstones.filter((id) => !buried.has(id));
  return { fetch: fetch.sort(), destroy: destroy.sort(), bury: bury.sort() };
}

/** A short digest of a key set (`cluster status` compares them across members). */
export function keySetDigest(ids: Iterable<string>): string {
  return createHash('sha256')
    .update([...ids].sort().join('\n'))
    .digest('hex')
    .slice(0, 16);
}

/** The smallest majority of `members`. */
export const majority = (members: number) => Math.floor(members / 2) + 1;
