/**
 * Partition custody: the sealed file store, unseal secret and custodian shares, PIN hashes, the
 * tamper-evident audit log, and backups. `signet hsm serve --dir DIR` calls
 * `openPartitionCustody`; the operator commands (`signet hsm init | unseal | user | audit |
 * backup | restore | sync`) call the rest.
 */
import type { AuditEvent, AuditSink, OpenPartitionCustody, PartitionCustody } from '../store.ts';
import { HsmError } from '../types.ts';
import { hashPin, verifyPin as verify } from './pin.ts';
import { openPartitionVault } from './vault.ts';

export { AuditLog, type AuditLogStats } from './audit-log.ts';
export { AUDIT_HEAD_FILE, AUDIT_LOG_FILE, type AuditRecord } from './audit-record.ts';
export { type AuditVerification, exportAuditLog, verifyAuditLog } from './audit-verify.ts';
export { type BackupSummary, createBackup, restoreBackup, type SyncSummary, syncBackup } from './backup.ts';
export type { Clock } from './codec.ts';
export { SealedFileStore } from './file-store.ts';
export { HEADER_FILE, type PartitionHeader, type Sealing, type UnsealMaterial } from './header.ts';
export { acquireDirLock, LOCK_FILE, lockHolder } from './lock.ts';
export { INDEX_FILE, KEYS_DIR } from './objects.ts';
export {
  checkPinPolicy,
  DEFAULT_PIN_HASH,
  hashPin,
  MIN_PIN_LENGTH,
  type PinHashParams,
  verifyPin,
} from './pin.ts';
export { parseSecret, parseShare, type ShareInfo } from './unseal-material.ts';
export {
  type InitPartitionOptions,
  initPartition,
  openPartitionVault,
  PartitionFolder,
  type PartitionSecrets,
  readHeader,
} from './vault.ts';

/**
 * What `signet hsm serve --dir DIR` runs on: the folder's vault (lock held, sealed until
 * unsealed), its audit log as the sink, and the PIN functions. Closing the sink (the partition
 * closes it last) closes the folder and releases its lock.
 */
export const openPartitionCustody: OpenPartitionCustody = async ({ dir, name, clock }) => {
  const folder = await openPartitionVault({ dir, clock });
  if (name !== undefined && name !== folder.name) {
    await folder.close();
    throw new HsmError('CKR_ARGUMENTS_BAD', `${dir} holds partition '${folder.name}', not '${name}'`);
  }
  const audit: AuditSink = {
    append: (event: AuditEvent) => folder.audit.append(event),
    close: () => folder.close(),
  };
  const custody: PartitionCustody = {
    vault: folder,
    audit,
    verifyPin: (user, pin) => verify(user, pin),
    hashPin: (pin) => hashPin(pin),
  };
  return custody;
};
export { changeOwnPin, createCustodyOps } from './ops.ts';
