import type { KeyObject } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import type { AuditEvent, AuditSink } from '../store.ts';
import { HsmError } from '../types.ts';
import { fsyncDir } from './atomic-file.ts';
import {
  AUDIT_HEAD_FILE,
  AUDIT_LOG_FILE,
  type AuditHead,
  chainLine,
  encodeHeadSlot,
  eventProblem,
  genesisHash,
  HEAD_SLOT_BYTES,
  parseRecord,
  readSlots,
  recordHash,
} from './audit-record.ts';
import { type Clock, systemClock } from './codec.ts';

export interface AuditLogOptions {
  dir: string;
  partitionId: string;
  /** partition.json's auditKey (Ed25519 SPKI, base64): checks the head the log continues from. */
  auditKey: string;
  clock?: Clock;
  /** Makes written records durable; tests substitute it to observe group commit. Default: fdatasync. */
  sync?: (handle: FileHandle) => Promise<void>;
}

export interface AuditLogStats {
  /** Records appended since open. */
  records: number;
  /** fdatasync calls on the log since open: fewer than records when commits were grouped. */
  syncs: number;
  lastSeq: number;
  /** Sequence number of the last signed head. */
  anchoredSeq: number;
}

interface Pending {
  line: string;
  record: { seq: number; hash: string };
  resolve: () => void;
  reject: (error: unknown) => void;
}

async function openHead(path: string): Promise<FileHandle> {
  // Not 'a+': Linux ignores the position of pwrite on a file opened O_APPEND (pwrite(2), BUGS).
  try {
    return await open(path, 'r+');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    return open(path, 'wx+', 0o600);
  }
}

/** Groups whose fdatasync may run at once; their answers are still released in order. */
const SYNCS_IN_FLIGHT = 2;

/** How stale the head on disk may be after a crash. */
const HEAD_SYNC_MS = 100;

function integrity(message: string): never {
  throw new HsmError('CKR_INTEGRITY_FAILED', message);
}

/**
 * The partition's append-only, hash-chained audit log (an AuditSink). `append` resolves only
 * once the record is on disk (written, then fdatasync). Records appended while a sync runs wait
 * and share the next one (group commit), so throughput follows the disk's sync rate times the
 * number of operations in flight. After each group, when the partition is unsealed, the head is
 * signed into audit.head so cutting records off the end is detected.
 *
 * A failed write or sync leaves the log's tail uncertain: the log then refuses every further
 * append (and with it every operation) until the partition restarts and re-reads its tail.
 */
export class AuditLog implements AuditSink {
  #pending: Pending[] = [];
  /** Set while #flush waits with nothing pending: a new record wakes it. */
  #wake: (() => void) | undefined;
  #flushing: Promise<void> | undefined;
  #failed: unknown;
  #closed = false;
  #signer: KeyObject | undefined;
  #nextSeq: number;
  #lastHash: string;
  #size: number;
  #headWrites = 0;
  #headSync: Promise<void> | undefined;
  #badSlot: number | undefined;
  #stats: AuditLogStats;

  private constructor(
    private readonly options: AuditLogOptions & { clock: Clock },
    private readonly log: FileHandle,
    private readonly head: FileHandle,
    state: { nextSeq: number; lastHash: string; size: number; anchored: number; badSlot?: number },
  ) {
    this.#nextSeq = state.nextSeq;
    this.#lastHash = state.lastHash;
    this.#size = state.size;
    this.#badSlot = state.badSlot;
    this.#stats = { records: 0, syncs: 0, lastSeq: state.nextSeq - 1, anchoredSeq: state.anchored };
  }

  /**
   * Opens the log for appending, after checking that its tail continues the last signed head:
   * a log shorter than its head, or whose record at the head's position differs, was truncated or
   * rewritten, and is refused (CKR_INTEGRITY_FAILED) rather than continued. A last line without
   * its newline is a write a crash interrupted before it was acknowledged: it is cut off.
   */
  static async open(options: AuditLogOptions): Promise<AuditLog> {
    const { dir, partitionId, auditKey } = options;
    const opened: FileHandle[] = [];
    try {
      const log = await open(join(dir, AUDIT_LOG_FILE), 'a+', 0o600);
      opened.push(log);
      const head = await openHead(join(dir, AUDIT_HEAD_FILE));
      opened.push(head);
      const headBytes = await head.readFile();
      let anchor: AuditHead | 'blank' = 'blank';
      const slots = headBytes.length === 0 ? undefined : readSlots(headBytes, partitionId, auditKey);
      if (slots) {
        if (!slots.newest) {
          integrity(`${AUDIT_HEAD_FILE} holds no correctly signed head: it was damaged or altered`);
        }
        anchor = slots.newest.head;
      } else if ((await log.stat()).size > 0) {
        integrity(
          `${AUDIT_HEAD_FILE} is missing or empty while ${AUDIT_LOG_FILE} holds records: it was removed`,
        );
      }
      const state = await AuditLog.#recover(log, partitionId, anchor);
      if (!slots) {
        await head.write(Buffer.alloc(2 * HEAD_SLOT_BYTES, 0x20), 0, 2 * HEAD_SLOT_BYTES, 0);
        await head.sync();
      }
      await fsyncDir(dir);
      const audit = new AuditLog({ ...options, clock: options.clock ?? systemClock }, log, head, {
        ...state,
        anchored: anchor === 'blank' ? 0 : anchor.seq,
        badSlot: slots?.unreadable,
      });
      // Write next into the slot that does not hold the newest head.
      audit.#headWrites = slots?.newest ? slots.newest.slot + 1 : 0;
      return audit;
    } catch (error) {
      for (const handle of opened) await handle.close();
      throw error;
    }
  }

  static async #recover(
    log: FileHandle,
    partitionId: string,
    anchor: AuditHead | 'blank',
  ): Promise<{ nextSeq: number; lastHash: string; size: number }> {
    let size = (await log.stat()).size;
    const start = anchor === 'blank' ? 0 : anchor.offset;
    if (anchor !== 'blank' && size <= start) {
      integrity(
        `${AUDIT_LOG_FILE} was truncated: it ends before record ${anchor.seq}, which the signed head names`,
      );
    }
    const tail = Buffer.alloc(size - start);
    if (tail.length > 0) await log.read(tail, 0, tail.length, start);
    let text = tail.toString('utf8');
    const lastNewline = text.lastIndexOf('\n');
    if (lastNewline !== text.length - 1) {
      // A torn final write: never acknowledged, since appends resolve only after the sync.
      const keep = lastNewline + 1;
      if (anchor !== 'blank' && keep === 0) {
        integrity(`${AUDIT_LOG_FILE} was truncated inside record ${anchor.seq}, which the signed head names`);
      }
      size = start + Buffer.byteLength(text.slice(0, keep));
      await log.truncate(size);
      await log.sync();
      text = text.slice(0, keep);
    }
    let lastHash = genesisHash(partitionId);
    let nextSeq = 1;
    const lines = text.split('\n').slice(0, -1);
    lines.forEach((line, i) => {
      const record = parseRecord(line);
      const where = `${AUDIT_LOG_FILE} record at byte ${start}+ (line ${i + 1} after the signed head)`;
      if (typeof record === 'string') integrity(`${where} is malformed: ${record}`);
      if (recordHash(record) !== record.hash) integrity(`${AUDIT_LOG_FILE} record ${record.seq} was edited`);
      if (i === 0 && anchor !== 'blank') {
        if (record.seq !== anchor.seq || record.hash !== anchor.hash) {
          integrity(
            `${AUDIT_LOG_FILE} does not hold the record ${anchor.seq} its signed head names: it was rewritten`,
          );
        }
      } else if (record.seq !== nextSeq || record.prevHash !== lastHash) {
        integrity(
          `${AUDIT_LOG_FILE} record ${record.seq} does not follow record ${nextSeq - 1}: the chain is broken`,
        );
      }
      lastHash = record.hash;
      nextSeq = record.seq + 1;
    });
    return { nextSeq, lastHash, size };
  }

  /** Sets (or clears) the key that signs heads: the partition's audit key, once unsealed. */
  setSigner(key: KeyObject | undefined): void {
    this.#signer = key;
    // Records appended while sealed are anchored soon after the unseal.
    this.#anchorSoon();
  }

  stats(): AuditLogStats {
    return { ...this.#stats };
  }

  append(event: AuditEvent): Promise<void> {
    if (this.#closed) return Promise.reject(new HsmError('CKR_DEVICE_REMOVED', 'the audit log is closed'));
    if (this.#failed !== undefined) {
      return Promise.reject(
        new HsmError('CKR_DEVICE_ERROR', 'the audit log failed an earlier write; restart the partition', {
          cause: this.#failed,
        }),
      );
    }
    const problem = eventProblem(event);
    if (problem) return Promise.reject(new HsmError('CKR_ARGUMENTS_BAD', problem));
    const record = chainLine(event, this.#nextSeq, this.#lastHash);
    this.#nextSeq += 1;
    this.#lastHash = record.hash;
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ line: record.line, record, resolve, reject });
      if (this.#flushing) this.#wake?.();
      else this.#flushing = this.#flush();
    });
  }

  /**
   * Writes the pending records as one group and makes them durable, then releases them. Nothing
   * else runs between the records arriving and their answers: the signed head, which only guards
   * against records cut off the end, is written apart (#anchorSoon). And the next group does not
   * wait for this group's fdatasync: it is written as soon as this group's write returns and synced
   * beside it (SYNCS_IN_FLIGHT), while answers are still released strictly in order, each group
   * only once it and every group before it are durable (issue #22). Writes stay one after the
   * other, so the file never has a hole, and a group's fdatasync covers every byte written before.
   */
  async #flush(): Promise<void> {
    const outstanding: Promise<boolean>[] = [];
    try {
      for (;;) {
        if (this.#pending.length === 0) {
          if (outstanding.length === 0) break;
          // Until the oldest sync finishes or a record arrives, which then forms the next group.
          const oldest = outstanding[0]!;
          const arrived = new Promise<'arrived'>((resolve) => {
            this.#wake = () => resolve('arrived');
          });
          const what = await Promise.race([oldest.then(() => 'synced' as const), arrived]);
          this.#wake = undefined;
          if (what === 'synced') outstanding.shift();
          continue;
        }
        if (this.#failed !== undefined) {
          this.#rejectPending(this.#pending.splice(0));
          continue;
        }
        const group = this.#pending;
        this.#pending = [];
        const data =
          group.length === 1
            ? Buffer.from(group[0]!.line)
            : Buffer.from(group.map((item) => item.line).join(''));
        const lastOffset = this.#size + data.length - Buffer.byteLength(group[group.length - 1]!.line);
        let synced: Promise<void>;
        try {
          await this.log.write(data, 0, data.length, this.#size);
          this.#size += data.length;
          synced = (this.options.sync ?? ((handle) => handle.datasync()))(this.log);
        } catch (error) {
          this.#failed ??= error;
          this.#rejectPending(group);
          continue;
        }
        const previous = outstanding.at(-1);
        outstanding.push(
          (async () => {
            let failure: unknown;
            try {
              await synced;
            } catch (error) {
              failure = error;
            }
            // In order: a group is released only after every group before it.
            if (previous && !(await previous)) failure ??= this.#failed;
            if (failure !== undefined) {
              this.#failed ??= failure;
              this.#rejectPending(group);
              return false;
            }
            const last = group[group.length - 1]!.record;
            this.#stats.syncs += 1;
            this.#stats.records += group.length;
            this.#stats.lastSeq = last.seq;
            this.#newest = { seq: last.seq, hash: last.hash, offset: lastOffset };
            for (const item of group) item.resolve();
            this.#anchorSoon();
            return true;
          })(),
        );
        if (outstanding.length >= SYNCS_IN_FLIGHT) await outstanding.shift();
      }
    } finally {
      this.#flushing = undefined;
    }
  }

  #rejectPending(group: Pending[]): void {
    const failure = new HsmError('CKR_DEVICE_ERROR', 'the audit log could not be written', {
      cause: this.#failed,
    });
    for (const item of group) item.reject(failure);
  }

  /** The newest durable record, which the next head names. */
  #newest: { seq: number; hash: string; offset: number } | undefined;

  /** The newest durable record's sequence number and hash (`signet hsm cluster status` shows it). */
  get newest(): { seq: number; hash: string } | undefined {
    return this.#newest && { seq: this.#newest.seq, hash: this.#newest.hash };
  }

  /**
   * Signs the newest durable record into audit.head (and syncs it) at most every HEAD_SYNC_MS, off
   * the path of the answers; close() signs the last one. After a crash the signed head may lag
   * the log by that long: those records verify by their chain, and only their being cut off is
   * not detected, as before, when the head on disk was synced on the same schedule.
   */
  #anchorSoon(): void {
    if (this.#headSync || !this.#signer) return;
    this.#headSync = new Promise<void>((resolve) => setTimeout(resolve, HEAD_SYNC_MS))
      .then(() => this.#anchor())
      .catch((error: unknown) => {
        this.#failed ??= error;
      })
      .finally(() => {
        this.#headSync = undefined;
      });
  }

  /** Writes and syncs a head naming the newest durable record, if the last head does not. */
  async #anchor(): Promise<void> {
    const newest = this.#newest;
    if (!this.#signer || !newest || newest.seq <= this.#stats.anchoredSeq) return;
    await this.#writeHead({ ...newest, time: this.options.clock.now().toISOString() });
    await this.head.datasync();
  }

  async #writeHead(head: AuditHead): Promise<void> {
    // Repair a slot a crash tore first; otherwise alternate, so the older head survives a torn write.
    const slot = this.#badSlot ?? this.#headWrites % 2;
    this.#badSlot = undefined;
    this.#headWrites = slot + 1;
    await this.head.write(
      encodeHeadSlot(this.options.partitionId, head, this.#signer!),
      0,
      HEAD_SLOT_BYTES,
      slot * HEAD_SLOT_BYTES,
    );
    this.#stats.anchoredSeq = head.seq;
  }

  /** Waits for pending appends, signs the head if it can, and closes the files. */
  async close(): Promise<void> {
    if (this.#closed) return;
    while (this.#flushing) await this.#flushing;
    this.#closed = true;
    await this.#headSync;
    if (this.#failed === undefined) await this.#anchor().catch(() => {});
    await this.head.datasync().catch(() => {});
    await this.log.close();
    await this.head.close();
  }
}
