import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { readFileIfExists } from './atomic-file.ts';
import {
  AUDIT_HEAD_FILE,
  AUDIT_LOG_FILE,
  type AuditHead,
  genesisHash,
  parseRecord,
  readSlots,
  recordHash,
} from './audit-record.ts';
import { readHeader } from './vault.ts';

export type AuditBreak = 'edited' | 'deleted' | 'reordered' | 'truncated' | 'malformed' | 'head';

export type AuditVerification =
  | {
      ok: true;
      records: number;
      /** The last record covered by the signed head; records after it rest on the chain alone. */
      anchoredSeq: number;
      unanchored: number;
      /** A head slot that does not verify: a head write a crash tore, or an edit. Not an error by itself. */
      warning?: string;
    }
  | {
      ok: false;
      kind: AuditBreak;
      /** The first broken record's seq (as found in the log, or expected there). */
      seq?: number;
      /** 1-based line of audit.log where the break was found. */
      line?: number;
      reason: string;
      /** Records checked and found sound before the break. */
      records: number;
    };

/**
 * Checks a partition's audit log without any secret: every record's hash, the chain of
 * prevHash links from the partition's genesis, the sequence numbers, and that the log reaches
 * the head signed with the partition's audit key (public key in partition.json). Answers the
 * first broken record and why: edited, deleted, reordered, truncated.
 */
export async function verifyAuditLog({ dir }: { dir: string }): Promise<AuditVerification> {
  const header = await readHeader(dir);
  // The head is read before the log: a served partition writes the log first, so the log read
  // afterwards always reaches at least the head read here.
  const headBytes = await readFileIfExists(join(dir, AUDIT_HEAD_FILE));
  let head: AuditHead | undefined;
  let warning: string | undefined;
  if (headBytes && headBytes.length > 0) {
    const slots = readSlots(headBytes, header.id, header.auditKey);
    if (!slots.newest) {
      return {
        ok: false,
        kind: 'head',
        reason: `${AUDIT_HEAD_FILE} holds no correctly signed head`,
        records: 0,
      };
    }
    head = slots.newest.head;
    if (slots.unreadable !== undefined) {
      warning = `${AUDIT_HEAD_FILE} slot ${slots.unreadable} does not verify (a write interrupted by a crash, or an edit)`;
    }
  }
  const logPath = join(dir, AUDIT_LOG_FILE);
  const size = await open(logPath, 'r')
    .then(async (handle) => {
      try {
        const { size } = await handle.stat();
        const last = Buffer.alloc(1);
        if (size > 0) await handle.read(last, 0, 1, size - 1);
        return { size, endsWithNewline: size === 0 || last[0] === 0x0a };
      } finally {
        await handle.close();
      }
    })
    .catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
  if (!size) {
    if (head)
      return {
        ok: false,
        kind: 'truncated',
        seq: 1,
        reason: `${AUDIT_LOG_FILE} is missing but its signed head names record ${head.seq}`,
        records: 0,
      };
    return { ok: true, records: 0, anchoredSeq: 0, unanchored: 0 };
  }
  if (!headBytes && size.size > 0) {
    return { ok: false, kind: 'head', reason: `${AUDIT_HEAD_FILE} is missing: it was removed`, records: 0 };
  }

  const input = createReadStream(logPath);
  const reader = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  try {
    return await walk(reader[Symbol.asyncIterator](), header.id, head, size.endsWithNewline, warning);
  } finally {
    reader.close();
    input.destroy();
  }
}

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: one pass over the chain; every record check needs the previous record's state
async function walk(
  lines: AsyncIterator<string>,
  partitionId: string,
  head: AuditHead | undefined,
  endsWithNewline: boolean,
  warning: string | undefined,
): Promise<AuditVerification> {
  let lineNo = 0;
  let expected = 1;
  let prevHash = genesisHash(partitionId);
  let checked = 0;
  const fail = (kind: AuditBreak, reason: string, seq?: number): AuditVerification => ({
    ok: false,
    kind,
    reason,
    line: lineNo,
    records: checked,
    ...(seq !== undefined ? { seq } : {}),
  });
  const isLastLine = async () => {
    const next = await lines.next();
    return next.done === true;
  };
  for (;;) {
    const next = await lines.next();
    if (next.done) break;
    lineNo += 1;
    const record = parseRecord(next.value);
    if (typeof record === 'string') {
      if (!endsWithNewline && (await isLastLine())) {
        return fail(
          'truncated',
          `the last line is incomplete (${record}): the log was cut inside a record`,
          expected,
        );
      }
      return fail('malformed', `line ${lineNo} is not an audit record: ${record}`, expected);
    }
    if (recordHash(record) !== record.hash) {
      return fail(
        'edited',
        `record ${record.seq} was edited: its content does not match its hash`,
        record.seq,
      );
    }
    if (record.seq > expected) {
      // Missing here: either later in the file (reordered) or gone (deleted).
      const missing = { from: expected, to: record.seq - 1 };
      for (;;) {
        const rest = await lines.next();
        if (rest.done) break;
        const later = parseRecord(rest.value);
        if (typeof later !== 'string' && later.seq >= missing.from && later.seq <= missing.to) {
          return fail(
            'reordered',
            `record ${record.seq} comes before record ${later.seq}: records were reordered`,
            record.seq,
          );
        }
      }
      const span =
        missing.from === missing.to
          ? `record ${missing.from} was`
          : `records ${missing.from} to ${missing.to} were`;
      return fail(
        'deleted',
        `${span} deleted: record ${record.seq} follows record ${expected - 1}`,
        missing.from,
      );
    }
    if (record.seq < expected) {
      return fail(
        'reordered',
        `record ${record.seq} comes after record ${expected - 1}: records were reordered or repeated`,
        record.seq,
      );
    }
    if (record.prevHash !== prevHash) {
      return fail(
        'edited',
        `record ${record.seq} does not link to record ${record.seq - 1}: one of them was altered and re-hashed`,
        record.seq,
      );
    }
    if (head && record.seq === head.seq && record.hash !== head.hash) {
      return fail(
        'edited',
        `records up to ${head.seq} were rewritten and re-hashed: record ${head.seq} no longer matches the signed head`,
        head.seq,
      );
    }
    prevHash = record.hash;
    expected = record.seq + 1;
    checked += 1;
  }
  if (!endsWithNewline) {
    return fail(
      'truncated',
      'the last record has no line end: the log was cut inside a record',
      expected - 1,
    );
  }
  if (head && expected - 1 < head.seq) {
    return {
      ok: false,
      kind: 'truncated',
      seq: expected,
      line: lineNo,
      records: checked,
      reason: `the log ends at record ${expected - 1} but its signed head names record ${head.seq}: records ${expected} to ${head.seq} were cut off`,
    };
  }
  return {
    ok: true,
    records: checked,
    anchoredSeq: head?.seq ?? 0,
    unanchored: expected - 1 - (head?.seq ?? 0),
    ...(warning ? { warning } : {}),
  };
}

/**
 * Writes the audit log as JSON lines (one canonical record per line, as stored) for other
 * tools, and verifies it. Lines that are not records are skipped; the verification says why.
 */
export async function exportAuditLog({ dir, out }: { dir: string; out: Writable }): Promise<{
  records: number;
  verification: AuditVerification;
}> {
  const verification = await verifyAuditLog({ dir });
  let records = 0;
  const handle = await open(join(dir, AUDIT_LOG_FILE), 'r').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  try {
    for await (const line of handle?.readLines() ?? []) {
      if (typeof parseRecord(line) === 'string') continue;
      if (!out.write(`${line}\n`)) await new Promise((resolve) => out.once('drain', resolve));
      records += 1;
    }
  } finally {
    await handle?.close();
  }
  out.end();
  await finished(out);
  return { records, verification };
}
