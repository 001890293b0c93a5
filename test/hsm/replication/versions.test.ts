import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { derivePartitionKeys } from '../../../src/hsm/custody/seal.ts';
import {
  checkProof,
  type Membership,
  proveMembership,
  readMembership,
  signMembership,
} from '../../../src/hsm/replication/membership.ts';
import {
  keySetDigest,
  majority,
  mergeUser,
  nextVersion,
  planKeys,
  recordFailure,
} from '../../../src/hsm/replication/versions.ts';
import { openUsers, sealUsers } from '../../../src/hsm/replication/wire.ts';
import type { UserRecord } from '../../../src/hsm/store.ts';

const user = (change: Partial<UserRecord> = {}): UserRecord => ({
  name: 'clerk',
  role: 'user',
  pinHash: 'h1',
  failedLogins: 0,
  locked: false,
  version: 3,
  origin: 'b',
  ...change,
});

describe('user versions', () => {
  it.each([
    {
      name: 'a higher version wins',
      local: user(),
      remote: user({ version: 4, origin: 'a', pinHash: 'h2' }),
      kept: 'h2',
    },
    {
      name: 'a lower version loses',
      local: user(),
      remote: user({ version: 2, origin: 'z', pinHash: 'h2' }),
      kept: 'h1',
    },
    {
      name: 'at one version the higher member id wins',
      local: user(),
      remote: user({ origin: 'c', pinHash: 'h2' }),
      kept: 'h2',
    },
    {
      name: 'at one version a lower member id loses',
      local: user(),
      remote: user({ origin: 'a', pinHash: 'h2' }),
      kept: 'h1',
    },
  ])('$name', ({ local, remote, kept }) => {
    const merged = mergeUser(local, remote, 5);
    expect(((merged ?? local) as UserRecord).pinHash).toBe(kept);
  });

  it('resolves the same way whichever of two concurrent changes arrives first', () => {
    const base = user();
    const onA = nextVersion(base, 'a', { pinHash: 'from-a' });
    const onB = nextVersion(base, 'b', { pinHash: 'from-b' });
    const atA = (mergeUser(onA, onB, 5) ?? onA) as UserRecord;
    const atB = (mergeUser(onB, onA, 5) ?? onB) as UserRecord;
    expect(atA.pinHash).toBe('from-b');
    expect(atB.pinHash).toBe('from-b');
  });

  it('counts failures per member and locks once the sum over the cluster reaches the limit', () => {
    let onA = user();
    let onB = user();
    onA = recordFailure(onA, 'a', 5);
    onA = recordFailure(onA, 'a', 5);
    onB = recordFailure(onB, 'b', 5);
    onB = recordFailure(onB, 'b', 5);
    // Counted at the same time on two members: merging keeps both counts.
    const merged = mergeUser(onA, onB, 5) as UserRecord;
    expect(merged.failures).toEqual({ a: 2, b: 2 });
    expect(merged.failedLogins).toBe(4);
    expect(merged.locked).toBe(false);
    const fifth = recordFailure(merged, 'c', 5);
    expect(fifth.locked).toBe(true);
    // The lock reaches a member that counted fewer.
    expect((mergeUser(onA, fifth, 5) as UserRecord).locked).toBe(true);
    // Merging what is already known changes nothing.
    expect(mergeUser(fifth, onB, 5)).toBeUndefined();
  });

  it('an unlock (a new version) clears the failures counted against the old one', () => {
    const locked = recordFailure(user({ failures: { a: 4 }, failedLogins: 4 }), 'b', 5);
    expect(locked.locked).toBe(true);
    const unlocked = nextVersion(locked, 'c');
    expect(mergeUser(locked, unlocked, 5)).toMatchObject({
      locked: false,
      failedLogins: 0,
      failures: {},
      version: 4,
    });
    expect(mergeUser(unlocked, recordFailure(locked, 'a', 5), 5)).toBeUndefined();
  });

  it('a deletion wins over older copies and loses to a newer user of that name', () => {
    const deleted = { version: 4, origin: 'a' };
    expect(mergeUser(user(), deleted, 5)).toEqual(deleted);
    expect(mergeUser(deleted, user(), 5)).toBeUndefined();
    const recreated = user({ version: 5, origin: 'a', pinHash: 'new' });
    expect(mergeUser(deleted, recreated, 5)).toBe(recreated);
  });
});

describe('key sets', () => {
  it('fetches what a peer holds and this member lacks, unless either buried it', () => {
    const plan = planKeys(
      { keys: ['01', '02'], tombstones: ['05'] },
      { keys: ['02', '03', '04', '05'], tombstones: ['04'] },
    );
    expect(plan).toEqual({ fetch: ['03'], destroy: [], bury: ['04'] });
  });

  it('destroys a key a peer destroyed, and never takes back a key it destroyed itself', () => {
    const returning = { keys: ['01', '02'], tombstones: [] };
    const others = { keys: ['01'], tombstones: ['02'] };
    expect(planKeys(returning, others)).toEqual({ fetch: [], destroy: ['02'], bury: ['02'] });
    expect(planKeys(others, returning)).toEqual({ fetch: [], destroy: [], bury: [] });
  });

  it('digests a key set whatever its order, and majorities are the smallest ones', () => {
    expect(keySetDigest(['b', 'a'])).toBe(keySetDigest(['a', 'b']));
    expect(keySetDigest(['a'])).not.toBe(keySetDigest(['a', 'b']));
    expect([1, 2, 3, 4, 5].map(majority)).toEqual([1, 2, 2, 3, 3]);
  });
});

describe('membership and what crosses the links', () => {
  const id = 'ab'.repeat(16);
  const keys = derivePartitionKeys(Buffer.alloc(32, 7), Buffer.from(id, 'hex'));
  const other = derivePartitionKeys(Buffer.alloc(32, 8), Buffer.from(id, 'hex'));
  const membership: Membership = {
    partition: id,
    version: 2,
    members: [{ id: 'm1', url: 'tls://127.0.0.1:7001', cert: 'PEM' }],
    signedBy: 'officer',
    signedAt: '2026-12-05T12:00:00.000Z',
  };

  it('accepts a membership signed under the same master key, for the same partition, unaltered', () => {
    const signed = signMembership(keys.cluster, membership);
    expect(readMembership(keys.cluster, id, signed)?.membership.version).toBe(2);
    expect(readMembership(other.cluster, id, signed)).toBeUndefined();
    expect(readMembership(keys.cluster, 'cd'.repeat(16), signed)).toBeUndefined();
    const altered = { ...signed, membership: { ...membership, version: 3 } };
    expect(readMembership(keys.cluster, id, altered)).toBeUndefined();
    expect(readMembership(keys.cluster, id, { membership, signature: 'AAAA' })).toBeUndefined();
  });

  it('checks a joining member’s proof of the master key against a fresh nonce', () => {
    const proof = proveMembership(keys.cluster, id, 'n1');
    expect(checkProof(keys.cluster, id, 'n1', proof)).toBe(true);
    expect(checkProof(keys.cluster, id, 'n2', proof)).toBe(false);
    expect(checkProof(keys.cluster, id, 'n1', proveMembership(other.cluster, id, 'n1'))).toBe(false);
    const stranger = generateKeyPairSync('ed25519').privateKey;
    expect(checkProof(keys.cluster, id, 'n1', proveMembership(stranger, id, 'n1'))).toBe(false);
  });

  it('seals users for the link: only the same master key opens them, PIN hashes never in clear', () => {
    const snapshot = {
      users: [user({ pinHash: 'scrypt$secret-hash' })],
      deleted: { gone: { version: 2, origin: 'a' } },
    };
    const sealed = sealUsers(keys.objects, id, snapshot);
    expect(JSON.stringify(sealed)).not.toContain('secret-hash');
    expect(openUsers(keys.objects, id, sealed)).toEqual(snapshot);
    expect(() => openUsers(other.objects, id, sealed)).toThrow(/do not open under this cluster's master key/);
    expect(() => openUsers(keys.objects, 'cd'.repeat(16), sealed)).toThrow(/do not open/);
  });
});
