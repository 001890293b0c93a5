import { RemotePartition } from '../hsm/client.ts';
import { initPartition, type PartitionSecrets, parseShare } from '../hsm/custody/index.ts';
import { type Pkcs11FolderSpec, writePkcs11Spec } from '../hsm/pkcs11/folder.ts';
import { startPartitionProcess, temporarySocketPath } from '../hsm/process.ts';
import { HsmError, isHsmError, type KeyManager, type UnsealRequest } from '../hsm/types.ts';
import { CeremonyError } from './errors.ts';
import { sha256Hex } from './outputs.ts';

/**
 * How a ceremony reaches its partitions: through the HSM module's own APIs (custody's
 * initPartition for a new M-of-N sealed partition; a partition process started with
 * startPartitionProcess for an unserved folder; RemotePartition over the socket). The ceremony
 * holds two sessions: the crypto officer's, which creates and finds keys, and the crypto user's,
 * which signs (DESIGN.md "Roles").
 */

export interface CeremonyPartition {
  name: string;
  /** Logged in as the crypto officer; undefined when no officer PIN was given. */
  officer: KeyManager | undefined;
  /** Logged in as the crypto user; undefined when no user PIN was given. */
  user: KeyManager | undefined;
  /** A logged-in session for lookups (findKey, status): the officer's, else the user's. */
  lookup: KeyManager;
  close(): Promise<void>;
}

export interface Credential {
  name: string;
  pin: string;
}

export interface CreatePartitionRequest {
  dir: string;
  name: string;
  threshold: number;
  shares: number;
  officerPin: string;
  userPin: string;
  /** Writes each share file, once, before the partition folder appears; share 1 first. */
  saveShares(shares: string[]): Promise<void>;
  /** Keys on this PKCS#11 token instead of in the sealed folder (issue #25). */
  pkcs11?: Pkcs11FolderSpec;
}

export interface OpenPartitionRequest {
  /** An unserved folder (a partition process is started for the ceremony) ... */
  dir?: string;
  /** ... or the socket of a served one. */
  socket?: string;
  name: string;
  unseal?: UnsealRequest;
  officer?: Credential;
  user?: Credential;
  log?: (line: string) => void;
}

/** The seam the ceremony runs against; tests can use the real one (it starts real processes). */
export interface PartitionDriver {
  create(request: CreatePartitionRequest): Promise<void>;
  open(request: OpenPartitionRequest): Promise<CeremonyPartition>;
}

function asCeremonyError(error: unknown, what: string): unknown {
  if (isHsmError(error)) {
    const code =
      error.rv === 'CKR_UNSEAL_FAILED'
        ? 'ceremony.unseal_failed'
        : error.rv === 'CKR_PIN_INCORRECT' || error.rv === 'CKR_PIN_LOCKED'
          ? 'ceremony.login_failed'
          : 'ceremony.partition_failed';
    return new CeremonyError(code, `${what}: ${error.reason}`, { hsm: error.code }, { cause: error });
  }
  return error;
}

export const processPartitionDriver: PartitionDriver = {
  async create(request) {
    try {
      await initPartition({
        dir: request.dir,
        name: request.name,
        sealing: { kind: 'shares', shares: request.shares, threshold: request.threshold },
        officerPin: request.officerPin,
        userPin: request.userPin,
        saveSecrets: async (secrets: PartitionSecrets) => {
          if (!secrets.shares || secrets.shares.length !== request.shares) {
            throw new Error('the partition handed out no shares');
          }
          await request.saveShares(secrets.shares);
        },
      });
      if (request.pkcs11) await writePkcs11Spec(request.dir, request.pkcs11);
    } catch (error) {
      throw asCeremonyError(error, `cannot create the partition in ${request.dir}`);
    }
  },

  async open(request) {
    let stop: (() => Promise<void>) | undefined;
    let socketPath = request.socket;
    const clients: RemotePartition[] = [];
    const close = async () => {
      await Promise.allSettled(clients.map((c) => c.close()));
      await stop?.();
    };
    try {
      if (request.dir !== undefined) {
        const temp = await temporarySocketPath();
        const child = await startPartitionProcess({
          socketPath: temp.socketPath,
          dir: request.dir,
          name: request.name,
          ...(request.log ? { onLog: request.log } : {}),
        });
        socketPath = temp.socketPath;
        stop = async () => {
          await child.stop();
          await temp.cleanup();
        };
      }
      if (socketPath === undefined) throw new Error('a partition needs a dir or a socket');
      const control = await RemotePartition.connect({ socketPath, createKeyTimeoutMs: 300_000 });
      clients.push(control);
      const hello = control.hello;
      if (hello && hello.partition !== request.name) {
        throw new CeremonyError(
          'ceremony.partition_mismatch',
          `the partition is '${hello.partition}', not '${request.name}' as configured`,
        );
      }
      const status = await control.status();
      if (status.state === 'sealed') {
        if (!request.unseal) {
          throw new CeremonyError(
            'ceremony.unseal_failed',
            `partition ${request.name} is sealed: give its --share-file or --secret-file`,
          );
        }
        await control.unseal(request.unseal);
      } else if (status.state !== 'unsealed') {
        throw new CeremonyError('ceremony.partition_failed', `partition ${request.name} is ${status.state}`);
      }
      const session = async (credential: Credential) => {
        const client = await RemotePartition.connect({
          socketPath: socketPath!,
          createKeyTimeoutMs: 300_000,
          onConnect: async (p) => {
            await p.login({ user: credential.name, pin: credential.pin });
          },
        });
        clients.push(client);
        return client;
      };
      const officer = request.officer ? await session(request.officer) : undefined;
      const user = request.user ? await session(request.user) : undefined;
      return { name: request.name, officer, user, lookup: officer ?? user ?? control, close };
    } catch (error) {
      await close();
      throw asCeremonyError(error, `cannot open partition ${request.name}`);
    }
  },
};

/** What the transcript records of a share presented to unseal: its index and a digest, never the share. */
export function describeShare(material: Uint8Array): { index?: number; sha256: string } {
  try {
    const info = parseShare(material);
    return { index: info.index, sha256: sha256Hex(material) };
  } catch (error) {
    if (error instanceof HsmError) return { sha256: sha256Hex(material) };
    throw error;
  }
}
