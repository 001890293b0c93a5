import { randomBytes, X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { formatLinkUrl, parseLinkUrl } from '../link.ts';
import { definePartitionOp, type PartitionOp } from '../server.ts';
import type { PartitionSession } from '../session.ts';
import { HsmError, isHsmError } from '../types.ts';
import {
  certificateFingerprint,
  checkMemberId,
  checkProof,
  type Member,
  proveMembership,
  readMembership,
  signMembership,
} from './membership.ts';
import type { Replicator } from './replicator.ts';
import { keySetDigest, majority } from './versions.ts';
import { type PeerState, sealUsers } from './wire.ts';

/**
 * The cluster's operations on the partition socket (issue #23). `cluster.*` are the crypto
 * officer's (`signet hsm cluster ...`); `peer.*` are for the other members only: they answer only
 * on a mutual-TLS link whose client presented a member's certificate — except `peer.identify`
 * and `peer.membership`, which a member about to join answers to any link client, since what they
 * exchange is worthless without the master key (a proof of it, a membership signed under it).
 */

const refused = (why: string) => new HsmError('CKR_OPERATION_NOT_PERMITTED', why);

function linkOnly(session: PartitionSession): string {
  if (!session.linkPeer)
    throw refused('only members of the cluster, over their mutual-TLS links, may ask this');
  return session.linkPeer;
}

function memberOnly(replicator: Replicator, session: PartitionSession): Member {
  const member = replicator.memberByFingerprint(linkOnly(session));
  if (!member)
    throw refused("the link's certificate is not a member's: this member is not in the cluster's membership");
  return member;
}

export function createClusterOps(replicator: Replicator): Record<string, PartitionOp<never>> {
  return { ...officerOps(replicator), ...peerOps(replicator) };
}

const op = definePartitionOp;

/** `signet hsm cluster ...`, the crypto officer's. */
function officerOps(replicator: Replicator): Record<string, PartitionOp<never>> {
  return {
    'cluster.status': op({
      access: 'officer',
      args: z.strictObject({}).optional(),
      run: () => clusterStatus(replicator),
    }),
    'cluster.addMember': op({
      access: 'officer',
      args: z.strictObject({
        url: z.string().max(300),
        cert: z.string().max(20_000),
        id: z.string().max(64).optional(),
      }),
      run: (session, args, event) => {
        if (event) event.detail = `add ${args.url}`;
        return addMember(replicator, session, args);
      },
    }),
    'cluster.removeMember': op({
      access: 'officer',
      args: z.strictObject({ id: z.string().max(300) }),
      run: (session, args, event) => {
        if (event) event.detail = `remove ${args.id}`;
        return removeMember(replicator, session, args.id);
      },
    }),
  };
}

/** What members ask each other over their links. */
function peerOps(replicator: Replicator): Record<string, PartitionOp<never>> {
  return {
    'peer.identify': op({
      access: 'public',
      args: z.strictObject({ nonce: z.string().regex(/^[0-9a-f]{32,128}$/) }),
      run: async (session, { nonce }) => {
        linkOnly(session);
        const store = replicator.requireStore();
        const { folder } = replicator.options;
        return {
          partition: folder.partitionId,
          name: folder.name,
          proof: proveMembership(store.keys.cluster, folder.partitionId, nonce),
        };
      },
    }),
    'peer.membership': op({
      access: 'public',
      args: z.strictObject({ signed: z.unknown() }),
      run: async (session, { signed }) => {
        linkOnly(session);
        const store = replicator.requireStore();
        const membership = readMembership(store.keys.cluster, replicator.partitionId, signed);
        if (!membership)
          throw new HsmError(
            'CKR_DATA_INVALID',
            "the membership is not signed under this partition's master key",
          );
        await replicator.adopt(membership, 'from a member');
        return { version: replicator.membership()?.membership.version ?? 0 };
      },
    }),
    'peer.state': op({
      access: 'public',
      args: z.strictObject({}).optional(),
      run: async (session) => {
        memberOnly(replicator, session);
        return peerState(replicator);
      },
    }),
    'peer.keys': op({
      access: 'public',
      args: z.strictObject({ ids: z.array(z.string().regex(/^[0-9a-f]{2,64}$/)).max(256) }),
      run: async (session, { ids }) => {
        memberOnly(replicator, session);
        const store = replicator.requireStore();
        const files: Record<string, string> = {};
        for (const id of ids) {
          const bytes = await store.sealedKey(id);
          if (bytes) files[id] = bytes.toString('base64');
        }
        return { files };
      },
    }),
    'peer.notify': op({
      access: 'public',
      args: z
        .strictObject({
          key: z
            .string()
            .regex(/^[0-9a-f]{2,64}$/)
            .optional(),
        })
        .optional(),
      run: async (session, args) => {
        const member = memberOnly(replicator, session);
        await replicator.pull(member.id);
        return args?.key ? { holds: replicator.requireStore().keyIds().includes(args.key) } : null;
      },
    }),
    'peer.status': op({
      access: 'public',
      whenSealed: true,
      args: z.strictObject({}).optional(),
      run: async (session) => {
        linkOnly(session);
        if (replicator.options.partition.state !== 'unsealed')
          return { state: replicator.options.partition.state };
        memberOnly(replicator, session);
        return localStatus(replicator);
      },
    }),
  };
}

async function peerState(replicator: Replicator): Promise<PeerState> {
  const store = replicator.requireStore();
  return {
    membership: store.membership ?? null,
    keys: store.keyIds(),
    tombstones: store.tombstones(),
    certificates: Object.fromEntries(
      (await store.listCertificates()).map((c) => [
        c.keyId,
        { label: c.label, der: Buffer.from(c.der).toString('base64'), storedAt: c.storedAt },
      ]),
    ),
    users: sealUsers(store.keys.objects, replicator.partitionId, {
      users: await store.listUsers(),
      deleted: store.userTombstones(),
    }),
  };
}

/** What `cluster status` shows of one member. */
interface MemberStatus {
  state: string;
  keys?: number;
  keySetDigest?: string;
  auditHead?: { seq: number; hash: string } | null;
}

function localStatus(replicator: Replicator): MemberStatus {
  const { partition, folder } = replicator.options;
  const ids = partition.listKeys().map((key) => key.id);
  return {
    state: partition.state,
    keys: ids.length,
    keySetDigest: keySetDigest(ids),
    auditHead: folder.audit.newest ?? null,
  };
}

async function clusterStatus(replicator: Replicator) {
  const signed = replicator.membership();
  const self = replicator.self(signed);
  const members = signed?.membership.members ?? [];
  const rows = await Promise.all(
    members.map(async (member) => {
      const base = { id: member.id, url: member.url, self: member === self };
      if (member === self) return { ...base, reachable: true, ...localStatus(replicator) };
      const client = replicator.linkClient(member.url, replicator.fingerprintOf(member));
      try {
        const status = await client.call<MemberStatus>('peer.status', undefined, { timeoutMs: 5000 });
        return { ...base, reachable: true, ...status };
      } catch (error) {
        const down = isHsmError(error, 'CKR_DEVICE_REMOVED');
        return {
          ...base,
          reachable: !down,
          state: down ? 'unreachable' : 'refused',
          error: (error as Error).message,
        };
      } finally {
        await client.close();
      }
    }),
  );
  return {
    partition: replicator.partitionId,
    version: signed?.membership.version ?? 0,
    signedBy: signed?.membership.signedBy ?? null,
    quorum:
      members.length > 0
        ? Math.min(replicator.options.quorum ?? majority(members.length), members.length)
        : 1,
    members:
      members.length > 0
        ? rows
        : [
            {
              id: '(alone)',
              url: replicator.options.self.url,
              self: true,
              reachable: true,
              ...localStatus(replicator),
            },
          ],
  };
}

/** Asks the member at `url` to prove it holds this cluster's master key; throws a clear refusal otherwise. */
async function identify(replicator: Replicator, url: string, fingerprint: string): Promise<void> {
  const nonce = randomBytes(16).toString('hex');
  const client = replicator.linkClient(url, fingerprint);
  let answer: { partition?: unknown; name?: unknown; proof?: unknown };
  try {
    answer = await client.call('peer.identify', { nonce }, { timeoutMs: 10_000 });
  } catch (error) {
    if (isHsmError(error, 'CKR_TOKEN_SEALED'))
      throw refused(`the member at ${url} is sealed: unseal it, then add it`);
    if (isHsmError(error, 'CKR_DEVICE_REMOVED'))
      throw new HsmError(
        'CKR_DEVICE_REMOVED',
        `cannot reach a member at ${url} over the link: ${(error as HsmError).reason}`,
      );
    throw error;
  } finally {
    await client.close();
  }
  const { folder } = replicator.options;
  if (answer.partition !== folder.partitionId) {
    throw refused(
      `refused: the member at ${url} holds partition ${String(answer.name)} (${String(answer.partition)}), not this cluster's ${folder.name} (${folder.partitionId}); a new member starts from a backup of this cluster (signet hsm backup, then signet hsm restore)`,
    );
  }
  if (!checkProof(replicator.requireStore().keys.cluster, folder.partitionId, nonce, answer.proof)) {
    throw refused(
      `refused: the member at ${url} does not hold this cluster's master key; restore it from a backup of this cluster`,
    );
  }
}

async function addMember(
  replicator: Replicator,
  session: PartitionSession,
  args: { url: string; cert: string; id?: string | undefined },
) {
  let url: string;
  let fingerprint: string;
  try {
    url = formatLinkUrl(parseLinkUrl(args.url));
    fingerprint = certificateFingerprint(args.cert);
  } catch (error) {
    throw new HsmError('CKR_ARGUMENTS_BAD', (error as Error).message.slice(0, 200));
  }
  const id = checkMemberId(args.id ?? url.slice('tls://'.length));
  const current = replicator.membership();
  const self = replicator.self(current);
  if (current && !self)
    throw refused('this member is not in the cluster it holds the membership of: ask a member');
  const members: Member[] = current?.membership.members ?? [
    {
      id: replicator.options.self.url.slice('tls://'.length),
      url: replicator.options.self.url,
      cert: replicator.options.self.cert.toString('utf8'),
    },
  ];
  const clash = members.find(
    (m) => m.id === id || m.url === url || replicator.fingerprintOf(m) === fingerprint,
  );
  if (clash)
    throw new HsmError(
      'CKR_OBJECT_EXISTS',
      `member ${clash.id} (${clash.url}) already has that id, address or certificate`,
    );
  await identify(replicator, url, fingerprint);
  const cert = new X509Certificate(args.cert).toString();
  return publish(replicator, session, [...members, { id, url, cert }], current?.membership.version ?? 0);
}

async function removeMember(replicator: Replicator, session: PartitionSession, which: string) {
  const current = replicator.membership();
  const self = replicator.self(current);
  if (!current || !self) throw refused('this member is in no cluster');
  const gone = current.membership.members.find((m) => m.id === which || m.url === which);
  if (!gone) throw new HsmError('CKR_ARGUMENTS_BAD', `no member ${which}`);
  if (gone === self) throw refused('a member does not remove itself: run remove-member on another member');
  return publish(
    replicator,
    session,
    current.membership.members.filter((m) => m !== gone),
    current.membership.version,
  );
}

/** Signs the next membership for the officer, keeps it, and hands it to every member in it. */
async function publish(
  replicator: Replicator,
  session: PartitionSession,
  members: Member[],
  version: number,
) {
  const store = replicator.requireStore();
  const signed = signMembership(store.keys.cluster, {
    partition: replicator.partitionId,
    version: version + 1,
    members,
    signedBy: session.loggedInAs?.name ?? 'officer',
    signedAt: replicator.options.partition.isoNow(),
  });
  await replicator.adopt(signed, `signed by ${signed.membership.signedBy}`);
  const self = replicator.self(signed);
  const delivered: string[] = [];
  const missed: string[] = [];
  await Promise.all(
    members
      .filter((m) => m !== self)
      .map(async (member) => {
        const client = replicator.linkClient(member.url, replicator.fingerprintOf(member));
        try {
          await client.call('peer.membership', { signed }, { timeoutMs: 10_000 });
          // It pulls from here at once rather than at its next round: a new member gets every key now.
          await client.call('peer.notify', undefined, { timeoutMs: 30_000 });
          delivered.push(member.id);
        } catch (error) {
          replicator.log(
            `member ${member.id} did not take membership ${version + 1} yet: ${(error as Error).message}`,
          );
          missed.push(member.id);
        } finally {
          await client.close();
        }
      }),
  );
  return { version: version + 1, members: members.map(({ id, url }) => ({ id, url })), delivered, missed };
}
