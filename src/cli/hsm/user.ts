import { RemotePartition } from '../../hsm/client.ts';
import {
  changeOwnPin,
  openPartitionCustody,
  openPartitionVault,
  readHeader,
  type UnsealMaterial,
} from '../../hsm/custody/index.ts';
import { EmulatedPartition, type PartitionSession } from '../../hsm/partition.ts';
import { nextVersion } from '../../hsm/replication/versions.ts';
import type { PartitionUserAdmin, Role, UserInfo } from '../../hsm/types.ts';
import { HsmError, ROLES } from '../../hsm/types.ts';
import { CliError, EXIT, parseCommandArgs, readSecret, UsageError } from '../args.ts';
import { hsmFailure } from './connect.ts';
import { readNewPin } from './init.ts';
import { MATERIAL_OPTIONS, MATERIAL_USAGE, promptSecret, readUnsealMaterial } from './unseal.ts';

export const USAGE = `usage: signet hsm user <add|unlock|pin|list|remove> (--socket PATH | --dir DIR) [options]

  add NAME --role officer|user [--new-pin-file FILE]   create a user (officer)
  unlock NAME                                          clear a user's lock and failed logins (officer)
  pin --new-pin-file FILE                              change your own PIN (the one you logged in with)
  pin NAME [--new-pin-file FILE]                       set another user's PIN, which also unlocks it (officer)
  list                                                 users, roles, failed logins, locks (officer)
  remove NAME --yes                                    delete a user (officer)

Reaching the partition:
  --socket PATH        a served partition
  --dir DIR            a partition folder no process serves; also needs its unseal material:
${MATERIAL_USAGE.replace(/^/gm, '  ')}
  --user NAME          log in as NAME (default officer)
  --pin-file FILE      NAME's PIN (else SIGNET_HSM_PIN, else a prompt)
  --custodian          with --dir, for unlock and pin NAME only: act with the authority of the
                       unseal material instead of an officer login (the way back for a locked officer)
  --new-pin-file FILE  the new PIN (else SIGNET_HSM_NEW_PIN, else typed twice at a prompt)
  --json               print JSON`;

const OPTIONS = {
  socket: { type: 'string' },
  dir: { type: 'string' },
  ...MATERIAL_OPTIONS,
  user: { type: 'string' },
  'pin-file': { type: 'string' },
  'new-pin-file': { type: 'string' },
  role: { type: 'string' },
  custodian: { type: 'boolean' },
  yes: { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = ReturnType<typeof parseCommandArgs<typeof OPTIONS>>['values'];

/** What each action needs from a logged-in partition, remote or in-process. */
interface Admin extends PartitionUserAdmin {
  changePin(request: { oldPin: string; newPin: string }): Promise<void>;
}

async function loginPin(values: Values): Promise<string> {
  if (values['pin-file'] !== undefined || process.env.SIGNET_HSM_PIN) {
    return readSecret({ file: values['pin-file'], env: 'SIGNET_HSM_PIN', what: 'PIN' });
  }
  return promptSecret(`PIN of ${values.user ?? 'officer'}: `);
}

export async function run(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  if (action === '--help' || action === '-h') {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (!action) throw new UsageError('an action is required: add, unlock, pin, list or remove');
  if (!['add', 'unlock', 'pin', 'list', 'remove'].includes(action)) {
    throw new UsageError(`unknown action '${action}': add, unlock, pin, list or remove`);
  }
  const { values, positionals } = parseCommandArgs(rest, OPTIONS, { allowPositionals: true });
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  if ((values.socket === undefined) === (values.dir === undefined)) {
    throw new UsageError('pass exactly one of --socket PATH and --dir DIR');
  }
  if (positionals.length > 1) throw new UsageError(`unexpected arguments: ${positionals.slice(1).join(' ')}`);
  const target = positionals[0];
  const user = values.user ?? 'officer';
  const ownPin = action === 'pin' && (target === undefined || target === values.user);
  if (['add', 'unlock', 'remove'].includes(action) && !target)
    throw new UsageError(`user ${action} needs a user NAME`);
  if (action === 'add' && !(ROLES as readonly string[]).includes(values.role ?? '')) {
    throw new UsageError('user add needs --role officer or --role user');
  }
  if (action === 'remove' && !values.yes)
    throw new UsageError(`user remove deletes ${target} for good: add --yes`);
  if (
    values.custodian &&
    (values.dir === undefined || !(action === 'unlock' || (action === 'pin' && target)))
  ) {
    throw new UsageError('--custodian goes with --dir, for unlock NAME and pin NAME');
  }
  const newPin =
    action === 'add' || action === 'pin'
      ? await readNewPin(values['new-pin-file'], 'new PIN', 'SIGNET_HSM_NEW_PIN')
      : '';

  if (values.custodian) {
    const material = await readUnsealMaterial(values);
    const info = await asCustodians(values.dir!, material, action as 'unlock' | 'pin', target!, newPin).catch(
      (e) => {
        throw hsmFailure(e);
      },
    );
    print(values, action, info);
    return EXIT.ok;
  }
  const pin = await loginPin(values);
  const result = await withAdmin(values, user, pin, async (admin) => {
    switch (action) {
      case 'add':
        return admin.createUser({ name: target!, role: values.role as Role, pin: newPin });
      case 'unlock':
        return admin.unlockUser({ name: target! });
      case 'pin':
        if (ownPin) return admin.changePin({ oldPin: pin, newPin });
        return admin.setUserPin({ name: target!, pin: newPin });
      case 'list':
        return admin.listUsers();
      default:
        return admin.deleteUser({ name: target! });
    }
  });
  print(values, action, result, ownPin ? user : target);
  return EXIT.ok;
}

function print(values: Values, action: string, result: unknown, who?: string): void {
  if (values.json) {
    console.log(JSON.stringify(result ?? { ok: true }, null, 2));
    return;
  }
  if (action === 'list') {
    for (const u of result as UserInfo[]) {
      console.log(
        `${u.name.padEnd(20)} ${u.role.padEnd(8)} ${u.locked ? 'LOCKED' : 'active'}  failed logins ${u.failedLogins}`,
      );
    }
    return;
  }
  const messages: Record<string, string> = {
    add: `user ${(result as UserInfo)?.name} created`,
    unlock: `user ${(result as UserInfo)?.name} unlocked`,
    pin: `PIN of ${who ?? (result as UserInfo)?.name} changed`,
    remove: `user ${who} removed`,
  };
  console.log(messages[action]);
}

function adminOf(
  target: PartitionUserAdmin,
  changePin: (request: { oldPin: string; newPin: string }) => Promise<void>,
): Admin {
  return {
    createUser: (request) => target.createUser(request),
    listUsers: () => target.listUsers(),
    unlockUser: (request) => target.unlockUser(request),
    setUserPin: (request) => target.setUserPin(request),
    deleteUser: (request) => target.deleteUser(request),
    changePin,
  };
}

/** Logs in and runs `body` against a served partition or, with --dir, one opened in this process. */
async function withAdmin<T>(
  values: Values,
  user: string,
  pin: string,
  body: (admin: Admin) => Promise<T>,
): Promise<T> {
  if (values.socket !== undefined) {
    const partition = await RemotePartition.connect({ socketPath: values.socket }).catch((error) => {
      throw hsmFailure(error);
    });
    try {
      await partition.login({ user, pin });
      return await body(
        adminOf(partition, async (request) => {
          await partition.call('changePin', request);
        }),
      );
    } catch (error) {
      throw hsmFailure(error);
    } finally {
      await partition.close();
    }
  }
  const material = await readUnsealMaterial(values);
  const dir = values.dir!;
  let partition: EmulatedPartition | undefined;
  try {
    const { name } = await readHeader(dir);
    const custody = await openPartitionCustody({ dir, name, clock: { now: () => new Date() } });
    partition = await EmulatedPartition.open({ name, ...custody });
    const session: PartitionSession = partition.openSession();
    await session.unseal(material as { secret?: Uint8Array; shares?: Uint8Array[] });
    await session.login({ user, pin });
    const opened = partition;
    return await body(
      adminOf(session, (request) =>
        session.perform('changePin', 'any', () => changeOwnPin(opened, custody, session, request)),
      ),
    );
  } catch (error) {
    throw hsmFailure(error);
  } finally {
    await partition?.close();
  }
}

/**
 * The custodians' way back when the officer is locked out: the unseal material is the
 * partition's root of authority, so holding it may clear a lock or set a PIN. Audited as such.
 */
async function asCustodians(
  dir: string,
  material: UnsealMaterial,
  action: 'unlock' | 'pin',
  name: string,
  newPin: string,
): Promise<UserInfo> {
  const { hashPin } = await import('../../hsm/custody/index.ts');
  const folder = await openPartitionVault({ dir });
  const op = action === 'unlock' ? 'unlockUser' : 'setUserPin';
  const audit = (result: string) =>
    folder.audit.append({
      time: new Date().toISOString(),
      op,
      user: '(custodians)',
      subject: name,
      detail: 'with the unseal material (signet hsm user --custodian)',
      result,
    });
  try {
    const store = await folder.unseal(material);
    try {
      const record = await store.getUser(name);
      if (!record) throw new HsmError('CKR_ARGUMENTS_BAD', `no user ${name}`);
      const pinHash = action === 'pin' ? await hashPin(newPin) : record.pinHash;
      // A new version (issue #23), so the members of its cluster take it over their older copies.
      await store.putUser(nextVersion(record, record.origin ?? '', { pinHash }));
      await audit('ok');
      return { name, role: record.role, failedLogins: 0, locked: false };
    } catch (error) {
      await audit(error instanceof HsmError ? error.code : 'hsm.device_error').catch(() => {});
      throw error;
    }
  } catch (error) {
    if (error instanceof HsmError) throw error;
    throw new CliError((error as Error).message, EXIT.failed, { cause: error });
  } finally {
    await folder.close();
  }
}
