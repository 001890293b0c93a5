import { existsSync, readFileSync } from 'node:fs';
import { chmod, chown } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { z } from 'zod';
import { PartitionFolder } from '../../hsm/custody/vault.ts';
import {
  formatLinkUrl,
  type LinkAddress,
  type LinkListener,
  parseLinkUrl,
  startLinkListener,
} from '../../hsm/link.ts';
import {
  createMemoryStore,
  createMemoryVault,
  hashPinScrypt,
  MemoryAuditSink,
  verifyPinScrypt,
} from '../../hsm/memory-store.ts';
import { createCertificateOps } from '../../hsm/p11/certificates.ts';
import { type P11Server, startP11Server } from '../../hsm/p11/server.ts';
import { EmulatedPartition } from '../../hsm/partition.ts';
import { createClusterOps } from '../../hsm/replication/ops.ts';
import { Replicator } from '../../hsm/replication/replicator.ts';
import { type PartitionOp, startPartitionServer } from '../../hsm/server.ts';
import type { OpenPartitionCustody, PartitionCustody } from '../../hsm/store.ts';
import { ROLES } from '../../hsm/types.ts';
import { moduleFile } from '../../lib/module-file.ts';
import { CliError, EXIT, parseCommandArgs, UsageError } from '../args.ts';
import { openToken, readPkcs11Spec, readTokenPin } from './pkcs11.ts';

export const USAGE = `usage: signet hsm serve (--dir DIR | --ephemeral FILE) [--socket PATH] [--name NAME]

Runs one partition process. Clients reach it only through the Unix socket (mode 0600).

  --dir DIR          the partition folder (from 'signet hsm init'); starts sealed
  --ephemeral FILE   an in-memory partition for tests and benchmarks, provisioned from FILE
                     ({"users": [{"name", "role", "pin"}], "unsealSecret"?: base64}); it forgets
                     everything when it stops
  --socket PATH      where to listen; default DIR/partition.sock
  --name NAME        partition name in key URIs; default the name the folder was created with
  --socket-group G   also let group G (name or number) connect: the socket is created 0600,
                     then given to G and opened to 0660 (the CA as another OS user, README)
  --exit-with-stdin  stop when standard input closes (how a parent process keeps its partition
                     from outliving it)
  --p11-socket PATH  also answer p11-kit's PKCS#11 RPC protocol on this socket (mode 0600), for
                     programs using p11-kit-client.so with P11_KIT_SERVER_ADDRESS=unix:path=PATH;
                     only keys whose purposes are exactly 'other' are visible there
  --p11-socket-group G
                     let group G connect to the PKCS#11 socket too (0660)
  --p11-user NAME    the partition user C_Login(CKU_USER) logs in as; default 'ca'
                     (C_Login(CKU_SO) is the officer)
  --token-pin-file FILE
                     for a partition whose keys live on a PKCS#11 token ('signet hsm init
                     --pkcs11-module'): the token's own PIN (else SIGNET_PKCS11_PIN)
  --listen tls://HOST:PORT
                     also serve the same protocol on TCP with mutual TLS 1.3, for CA nodes on
                     other machines (a cluster member); needs --tls-cert, --tls-key and
                     --client-ca: a client must present a certificate issued by that CA
  --tls-cert FILE    this partition's certificate (PEM), with its chain
  --tls-key FILE     its private key (PEM)
  --client-ca FILE   the CA (PEM) whose certificates the CA nodes present
  --quorum N         in a cluster: members that must hold a key created here before its creation
                     is acknowledged; default a majority of the members
  --sync-interval-ms N
                     in a cluster: how often this member compares with every other; default 5000
  --advertise tls://HOST:PORT
                     in a cluster: where the other members reach this one, when not at --listen
                     (which may be 0.0.0.0); recorded when the first add-member enrols it

With --dir and --listen the partition can be a member of a cluster ('signet hsm cluster'): the
members replicate keys, tombstones, users and failed logins among themselves over their links,
each presenting its --tls-cert (which then needs both serverAuth and clientAuth) to the others.`;

const ephemeralSpec = z.strictObject({
  users: z.array(z.strictObject({ name: z.string(), role: z.enum(ROLES), pin: z.string().min(1) })).max(64),
  unsealSecret: z.base64().optional(),
});

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a straight line of start-up steps in the order they must happen
export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    dir: { type: 'string' },
    ephemeral: { type: 'string' },
    socket: { type: 'string' },
    name: { type: 'string' },
    'socket-group': { type: 'string' },
    'exit-with-stdin': { type: 'boolean' },
    'p11-socket': { type: 'string' },
    'p11-socket-group': { type: 'string' },
    'p11-user': { type: 'string' },
    'token-pin-file': { type: 'string' },
    listen: { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'client-ca': { type: 'string' },
    quorum: { type: 'string' },
    'sync-interval-ms': { type: 'string' },
    advertise: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  if ((values.dir === undefined) === (values.ephemeral === undefined)) {
    throw new UsageError('pass exactly one of --dir DIR and --ephemeral FILE');
  }
  const name = values.name ?? (values.dir ? await folderPartitionName(values.dir) : undefined);
  if (!name) throw new UsageError('--name NAME is required with --ephemeral');
  const socketPath = values.socket ?? (values.dir ? join(values.dir, 'partition.sock') : undefined);
  if (!socketPath) throw new UsageError('--socket PATH is required with --ephemeral');
  // sockaddr_un.sun_path holds 108 octets, the terminating NUL included (unix(7)).
  if (Buffer.byteLength(socketPath) > 107)
    throw new UsageError(`socket path ${socketPath} is too long; pass a shorter --socket`);
  const p11SocketPath = values['p11-socket'];
  if (p11SocketPath !== undefined && Buffer.byteLength(p11SocketPath) > 107)
    throw new UsageError(`socket path ${p11SocketPath} is too long; pass a shorter --p11-socket`);
  if (p11SocketPath === undefined && (values['p11-socket-group'] ?? values['p11-user']) !== undefined)
    throw new UsageError('--p11-socket-group and --p11-user need --p11-socket');
  if (p11SocketPath !== undefined && resolve(p11SocketPath) === resolve(socketPath))
    throw new UsageError('--p11-socket must differ from --socket');

  const link = linkOptions(values);
  const cluster = clusterOptions(values, link !== undefined && values.dir !== undefined);

  const log = (line: string) => process.stderr.write(`signet hsm [${name}]: ${line}\n`);
  const tokenSpec = values.dir ? readPkcs11Spec(values.dir) : undefined;
  if (!tokenSpec && values['token-pin-file'] !== undefined)
    throw new UsageError('--token-pin-file applies to a partition whose keys live on a PKCS#11 token');
  // The token first: a wrong token PIN must not leave the folder's lock taken.
  const tokenKeys = tokenSpec
    ? await openToken(tokenSpec, readTokenPin(values['token-pin-file']), log)
    : undefined;
  const custody = values.ephemeral
    ? await ephemeralCustody(values.ephemeral)
    : await dirCustody(values.dir!, name).catch(async (error) => {
        await tokenKeys?.close();
        throw error;
      });
  let partition: EmulatedPartition;
  try {
    partition = await EmulatedPartition.open({ name, ...custody, log, ...(tokenKeys ? { tokenKeys } : {}) });
    if (tokenKeys) log(`keys on ${tokenKeys.describe()}`);
  } catch (error) {
    await tokenKeys?.close();
    throw new CliError(`cannot open partition ${name}: ${(error as Error).message}`, EXIT.failed, {
      cause: error,
    });
  }
  const replicator =
    link && cluster && custody.vault instanceof PartitionFolder
      ? new Replicator({
          partition,
          folder: custody.vault,
          self: {
            url: cluster.advertise ?? values.listen!,
            cert: link.cert,
            key: link.key,
            ca: link.clientCa,
          },
          ...(cluster.quorum !== undefined ? { quorum: cluster.quorum } : {}),
          ...(cluster.intervalMs !== undefined ? { intervalMs: cluster.intervalMs } : {}),
          log,
        })
      : undefined;
  const extensions = {
    ...(await custodyOps(partition, custody)),
    ...createCertificateOps(partition),
    ...(replicator ? createClusterOps(replicator) : {}),
  };
  // The PKCS#11 socket first: whoever waits for the partition's own socket then finds both.
  let p11: P11Server | undefined;
  if (p11SocketPath !== undefined) {
    try {
      p11 = await startP11Server({
        partition,
        socketPath: p11SocketPath,
        ...(values['p11-user'] ? { user: values['p11-user'] } : {}),
        log,
      });
      if (values['p11-socket-group'] !== undefined)
        await shareSocket(p11SocketPath, values['p11-socket-group']);
    } catch (error) {
      await p11?.close();
      await partition.close();
      throw new CliError(
        `cannot serve PKCS#11 on ${p11SocketPath}: ${(error as Error).message}`,
        EXIT.failed,
        {
          cause: error,
        },
      );
    }
    log(`serving PKCS#11 (p11-kit RPC) on ${p11SocketPath}`);
  }
  const server = await startPartitionServer({ partition, socketPath, log, extensions }).catch(
    async (error: Error) => {
      await p11?.close();
      await partition.close();
      throw new CliError(`cannot serve on ${socketPath}: ${error.message}`, EXIT.failed, { cause: error });
    },
  );
  if (values['socket-group'] !== undefined) {
    await shareSocket(socketPath, values['socket-group']).catch(async (error: Error) => {
      await p11?.close();
      await server.close();
      await partition.close();
      throw new CliError(`cannot share ${socketPath} with group ${values['socket-group']}: ${error.message}`);
    });
  }
  let linkListener: LinkListener | undefined;
  if (link) {
    try {
      linkListener = await startLinkListener({ ...link, server, log });
    } catch (error) {
      await p11?.close();
      await server.close();
      await partition.close();
      throw new CliError(`cannot listen on ${values.listen}: ${(error as Error).message}`, EXIT.failed, {
        cause: error,
      });
    }
    log(`serving mutual TLS on ${formatLinkUrl(linkListener.address)}`);
  }
  log(`serving on ${socketPath} (${partition.state})`);

  return new Promise<number>((done) => {
    let stopping = false;
    const stop = (why: string) => {
      if (stopping) return;
      stopping = true;
      log(`stopping (${why})`);
      void (async () => {
        await p11?.close();
        await replicator?.close();
        await Promise.all([linkListener?.close(), server.close()]);
        await partition.close();
        process.stdin.destroy();
        done(EXIT.ok);
      })();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    if (values['exit-with-stdin']) {
      process.stdin.on('end', () => stop('stdin closed'));
      process.stdin.on('error', () => stop('stdin closed'));
      process.stdin.resume();
    }
  });
}

/** --quorum and --sync-interval-ms, which apply to a cluster member (--dir and --listen). */
function clusterOptions(
  values: {
    quorum?: string | undefined;
    'sync-interval-ms'?: string | undefined;
    advertise?: string | undefined;
  },
  member: boolean,
): { quorum?: number; intervalMs?: number; advertise?: string } | undefined {
  const number = (flag: string, text: string | undefined, min: number) => {
    if (text === undefined) return undefined;
    if (!member) throw new UsageError(`--${flag} applies to a cluster member (--dir and --listen)`);
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < min)
      throw new UsageError(`--${flag} takes a whole number of at least ${min}`);
    return value;
  };
  const quorum = number('quorum', values.quorum, 1);
  const intervalMs = number('sync-interval-ms', values['sync-interval-ms'], 100);
  if (values.advertise !== undefined) {
    if (!member) throw new UsageError('--advertise applies to a cluster member (--dir and --listen)');
    try {
      parseLinkUrl(values.advertise);
    } catch (error) {
      throw new UsageError(`--advertise: ${(error as Error).message}`);
    }
  }
  if (!member) return undefined;
  return {
    ...(quorum !== undefined ? { quorum } : {}),
    ...(intervalMs !== undefined ? { intervalMs } : {}),
    ...(values.advertise !== undefined ? { advertise: values.advertise } : {}),
  };
}

/** --listen and its three files, read now so that a missing file is a usage mistake at start. */
function linkOptions(values: {
  listen?: string | undefined;
  'tls-cert'?: string | undefined;
  'tls-key'?: string | undefined;
  'client-ca'?: string | undefined;
}): (LinkAddress & { cert: Buffer; key: Buffer; clientCa: Buffer }) | undefined {
  const files = {
    'tls-cert': values['tls-cert'],
    'tls-key': values['tls-key'],
    'client-ca': values['client-ca'],
  };
  if (values.listen === undefined) {
    const given = Object.entries(files).find(([, file]) => file !== undefined);
    if (given) throw new UsageError(`--${given[0]} needs --listen tls://HOST:PORT`);
    return undefined;
  }
  let address: LinkAddress;
  try {
    address = parseLinkUrl(values.listen);
  } catch (error) {
    throw new UsageError(`--listen: ${(error as Error).message}`);
  }
  const missing = Object.entries(files).find(([, file]) => file === undefined);
  if (missing) throw new UsageError(`--listen needs --${missing[0]} FILE`);
  const read = (flag: string, file: string) => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new CliError(`cannot read --${flag} ${file}: ${(error as NodeJS.ErrnoException).code ?? error}`);
    }
  };
  return {
    ...address,
    cert: read('tls-cert', files['tls-cert']!),
    key: read('tls-key', files['tls-key']!),
    clientCa: read('client-ca', files['client-ca']!),
  };
}

async function ephemeralCustody(file: string): Promise<PartitionCustody> {
  let spec: z.infer<typeof ephemeralSpec>;
  try {
    spec = ephemeralSpec.parse(JSON.parse(readFileSync(file, 'utf8')));
  } catch (error) {
    throw new CliError(`cannot read the ephemeral partition spec ${file}: ${(error as Error).message}`);
  }
  const users = await Promise.all(
    spec.users.map(async (u) => ({
      name: u.name,
      role: u.role,
      pinHash: await hashPinScrypt(u.pin),
      failedLogins: 0,
      locked: false,
    })),
  );
  const store = createMemoryStore({ users });
  return {
    vault: createMemoryVault({
      store,
      ...(spec.unsealSecret ? { secret: Buffer.from(spec.unsealSecret, 'base64') } : {}),
    }),
    audit: new MemoryAuditSink(1000),
    verifyPin: verifyPinScrypt,
    hashPin: hashPinScrypt,
  };
}

/**
 * The sealed file store, users and audit chain of a partition folder come from custody
 * (issues #3, #4): src/hsm/custody/index.ts exporting `openPartitionCustody` (store.ts).
 */
async function dirCustody(dir: string, name: string): Promise<PartitionCustody> {
  const module = moduleFile('../../hsm/custody/index', import.meta.url);
  if (!existsSync(module)) {
    throw new CliError(
      'partition folders need the sealed file store (issue #3), which this build lacks; use --ephemeral',
    );
  }
  const { openPartitionCustody } = (await import(module)) as { openPartitionCustody: OpenPartitionCustody };
  try {
    return await openPartitionCustody({ dir, name, clock: { now: () => new Date() } });
  } catch (error) {
    throw new CliError(`cannot open partition folder ${dir}: ${(error as Error).message}`, EXIT.failed, {
      cause: error,
    });
  }
}

const CUSTODY_MODULE = moduleFile('../../hsm/custody/index', import.meta.url);

/** The name recorded in the folder's partition.json (a restored clone keeps it), else the folder's name. */
async function folderPartitionName(dir: string): Promise<string> {
  if (existsSync(CUSTODY_MODULE)) {
    const { readHeader } = (await import(CUSTODY_MODULE)) as {
      readHeader(dir: string): Promise<{ name: string }>;
    };
    const header = await readHeader(dir).catch(() => undefined);
    if (header) return header.name;
  }
  return basename(resolve(dir));
}

/** Custody's own socket operations (changePin: a user changes their PIN), for every partition. */
async function custodyOps(
  partition: EmulatedPartition,
  custody: PartitionCustody,
): Promise<Record<string, PartitionOp<never>>> {
  if (!existsSync(CUSTODY_MODULE)) return {};
  const { createCustodyOps } = (await import(CUSTODY_MODULE)) as {
    createCustodyOps(
      partition: EmulatedPartition,
      custody: PartitionCustody,
    ): Record<string, PartitionOp<never>>;
  };
  return createCustodyOps(partition, custody);
}

/**
 * Opens the socket to one group, for a CA that runs as another OS user (issue #4): connecting to
 * a Unix socket needs write permission on it (unix(7)). It was created 0600, so this only widens
 * access, to exactly that group.
 */
async function shareSocket(socketPath: string, group: string): Promise<void> {
  let gid = /^[0-9]+$/.test(group) ? Number(group) : undefined;
  if (gid === undefined) {
    const line = readFileSync('/etc/group', 'utf8')
      .split('\n')
      .find((entry) => entry.split(':')[0] === group);
    if (!line) throw new Error('no such group');
    gid = Number(line.split(':')[2]);
  }
  await chown(socketPath, -1, gid);
  await chmod(socketPath, 0o660);
}
