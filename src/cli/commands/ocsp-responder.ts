import { resolveDataDir, resolveIn } from '../../config/config.ts';
import { DatabaseLockedError } from '../../db/errors.ts';
import { RemotePartition } from '../../hsm/client.ts';
import { partitionOfKeyUri, tokenPartitions } from '../../hsm/key-uri.ts';
import type { KeyManager } from '../../hsm/types.ts';
import { parseDuration } from '../../lib/duration.ts';
import { CliError, EXIT, parseCommandArgs, readSecret, UsageError } from '../args.ts';
import { hsmFailure } from '../hsm/connect.ts';
import { quietLogger } from '../logging.ts';
import { issueResponder } from '../ocsp-responders.ts';
import { openRuntime, type Runtime } from '../runtime.ts';

export const USAGE = `usage: signet ocsp-responder rotate --issuer ID [--pin-file FILE] [--user NAME] [--data DIR]
       signet ocsp-responder list [--issuer ID] [--json] [--data DIR]

rotate  creates a new responder key (ecdsa-p256, purpose ocsp only) in the issuer's partition as
        the crypto officer (--user, default officer; PIN from --pin-file or SIGNET_HSM_PIN), has
        the issuer certify it (EKU id-kp-OCSPSigning, id-pkix-ocsp-nocheck, ocsp.responderValidity)
        and makes it the issuer's delegated OCSP responder; the previous one is retired. The
        running CA never needs officer rights: it re-issues the certificate for the same key
        before it expires by itself. An issuer without a responder signs its own responses.
list    lists the responders, active and retired.
With the embedded database, stop the server first.`;

async function withRuntime<T>(dataDir: string, body: (runtime: Runtime) => Promise<T>): Promise<T> {
  let runtime: Runtime;
  try {
    runtime = await openRuntime({ dataDir, logger: quietLogger() });
  } catch (error) {
    if (error instanceof DatabaseLockedError) {
      throw new CliError(
        `${error.message}\nsignet ocsp-responder: stop the server first (the embedded database serves one process at a time).`,
      );
    }
    throw error;
  }
  try {
    return await body(runtime);
  } finally {
    await runtime.close();
  }
}

/** The officer's session on the partition member this node reaches over its socket. */
async function officerSession(runtime: Runtime, partition: string, user: string, pin: string) {
  const member = runtime.config.partitions[partition]?.members.find((m) => m.socket !== undefined);
  if (!member?.socket) {
    throw new CliError(
      `partition ${partition} has no member with a socket: create the key with signet hsm keys`,
    );
  }
  const socketPath = resolveIn(runtime.dataDir, member.socket);
  return RemotePartition.connect({
    socketPath,
    onConnect: async (p) => {
      await p.login({ user, pin });
    },
  }).catch((error) => {
    throw hsmFailure(error);
  });
}

async function rotate(runtime: Runtime, issuerId: string, user: string, pin: string): Promise<number> {
  const issuer = runtime.issuers.get(issuerId);
  const record = await runtime.repositories.issuers.get(issuerId);
  if (!issuer || !record) throw new CliError(`no issuer ${issuerId} that this CA signs with`);
  const partitions = runtime.partitions as ReadonlyMap<string, KeyManager>;
  const tokens = record.keyUri.startsWith('pkcs11:') ? await tokenPartitions(partitions) : new Map();
  const partition = partitionOfKeyUri(record.keyUri, tokens);
  if (!partition) throw new CliError(`issuer ${issuerId}: its key ${record.keyUri} is in no partition`);
  const officer = await officerSession(runtime, partition, user, pin);
  let keyUri: string;
  let publicKey: Uint8Array;
  try {
    const stamp = runtime.clock.now().toISOString().replace(/[-:T]/g, '').slice(0, 14);
    const key = await officer.createKey({
      label: `${issuerId}-ocsp-${stamp}`,
      algorithm: 'ecdsa-p256',
      purposes: ['ocsp'],
    });
    keyUri = key.uri;
    publicKey = key.publicKey;
  } catch (error) {
    throw hsmFailure(error);
  } finally {
    await officer.close();
  }
  const validity = parseDuration(runtime.config.ocsp.responderValidity);
  if (!validity.ok) throw new CliError(`ocsp.responderValidity: ${validity.reason}`);
  const responder = await issueResponder({
    issuer,
    keyUri,
    publicKey,
    responders: runtime.repositories.ocspResponders,
    certificates: runtime.repositories.certificates,
    clock: runtime.clock,
    validitySeconds: validity.seconds,
  });
  console.log(
    `${responder.id}: key ${keyUri}, certificate valid until ${responder.notAfter.toISOString()} (renewed by the server)`,
  );
  return EXIT.ok;
}

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h') {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (!sub) throw new UsageError('a subcommand is required: rotate or list');
  const { values } = parseCommandArgs(rest, {
    issuer: { type: 'string' },
    user: { type: 'string' },
    'pin-file': { type: 'string' },
    data: { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  const dataDir = resolveDataDir(values.data);
  if (sub === 'rotate') {
    if (!values.issuer) throw new UsageError('--issuer ID is required');
    const pin = readSecret({ file: values['pin-file'], env: 'SIGNET_HSM_PIN', what: 'the officer PIN' });
    return withRuntime(dataDir, (runtime) => rotate(runtime, values.issuer!, values.user ?? 'officer', pin));
  }
  if (sub !== 'list') throw new UsageError(`unknown ocsp-responder command '${sub}'`);
  return withRuntime(dataDir, async (runtime) => {
    const issuers = values.issuer
      ? [values.issuer]
      : (await runtime.repositories.issuers.list()).map((i) => i.id);
    const rows = (
      await Promise.all(issuers.map((id) => runtime.repositories.ocspResponders.listForIssuer(id)))
    ).flat();
    if (values.json) {
      console.log(
        JSON.stringify(
          rows.map(({ certificateDer: _der, ...row }) => row),
          null,
          2,
        ),
      );
    } else {
      for (const row of rows)
        console.log(
          `${row.id.padEnd(40)} ${row.issuerId.padEnd(20)} ${row.status.padEnd(8)} until ${row.notAfter.toISOString()}  ${row.keyUri}`,
        );
    }
    return EXIT.ok;
  });
}
