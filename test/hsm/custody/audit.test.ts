import { readFileSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it, test } from 'vitest';
import { AuditLog } from '../../../src/hsm/custody/audit-log.ts';
import {
  chainRecord,
  genesisHash,
  parseRecord,
  recordHash,
  serializeRecord,
} from '../../../src/hsm/custody/audit-record.ts';
import { canonicalJson, sha256Hex } from '../../../src/hsm/custody/codec.ts';
import { parseHeader, unsealMasterKey } from '../../../src/hsm/custody/header.ts';
import {
  exportAuditLog,
  HEADER_FILE,
  openPartitionVault,
  verifyAuditLog,
} from '../../../src/hsm/custody/index.ts';
import { derivePartitionKeys } from '../../../src/hsm/custody/seal.ts';
import type { AuditEvent } from '../../../src/hsm/store.ts';
import { HsmError } from '../../../src/hsm/types.ts';
import { newPartition } from './helpers.ts';

const event = (i: number, extra: Partial<AuditEvent> = {}): AuditEvent => ({
  time: `2026-03-01T12:00:${String(i % 60).padStart(2, '0')}.000Z`,
  user: 'ca',
  op: 'sign',
  keyId: '0a0b',
  purpose: 'certificate',
  digest: 'ab'.repeat(32),
  mechanism: 'ecdsa-sha256',
  length: 100 + i,
  session: 1,
  result: 'ok',
  ...extra,
});

/** A partition whose log holds `count` signed records after its creation record. */
async function logWith(count: number) {
  const { dir, secrets } = await newPartition();
  const folder = await openPartitionVault({ dir });
  await folder.unseal({ secret: secrets.secret! });
  for (let i = 0; i < count; i++) await folder.audit.append(event(i));
  await folder.close();
  return { dir, secrets, path: join(dir, 'audit.log') };
}

async function signerOf(dir: string, secret: string) {
  const header = parseHeader(readFileSync(join(dir, HEADER_FILE)), HEADER_FILE);
  const keys = derivePartitionKeys(await unsealMasterKey(header, { secret }), Buffer.from(header.id, 'hex'));
  return { header, signer: keys.auditSigning };
}

const lines = (path: string) => readFileSync(path, 'utf8').split('\n').slice(0, -1);
const writeLines = (path: string, all: string[]) => writeFileSync(path, all.map((l) => `${l}\n`).join(''));

describe('the audit log', () => {
  it('chains every record to the one before, from a genesis bound to the partition', async () => {
    const { dir, path } = await logWith(3);
    const records = lines(path).map((line) => JSON.parse(line));
    const header = parseHeader(readFileSync(join(dir, HEADER_FILE)), HEADER_FILE);
    expect(records.map((r) => r.seq)).toEqual([1, 2, 3, 4]);
    expect(records[0].op).toBe('initPartition');
    expect(records[0].prevHash).toBe(genesisHash(header.id));
    for (let i = 1; i < records.length; i++) expect(records[i].prevHash).toBe(records[i - 1].hash);
    for (const record of records) expect(recordHash(record)).toBe(record.hash);
    expect(records[1]).toMatchObject({
      user: 'ca',
      op: 'sign',
      purpose: 'certificate',
      digest: 'ab'.repeat(32),
      result: 'ok',
    });
  });

  it('resolves an append only after its record has been synced to disk', async () => {
    const { dir, secrets } = await logWith(0);
    const { header, signer } = await signerOf(dir, secrets.secret!);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let synced = 0;
    const audit = await AuditLog.open({
      dir,
      partitionId: header.id,
      auditKey: header.auditKey,
      sync: async (handle) => {
        await gate;
        await handle.datasync();
        synced += 1;
      },
    });
    audit.setSigner(signer);
    let resolved = false;
    const appended = audit.append(event(1)).then(() => {
      resolved = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(resolved).toBe(false);
    release();
    await appended;
    expect(synced).toBe(1);
    await audit.close();
  });

  it('lets records that arrive during a sync share the next one (group commit)', async () => {
    const { dir, secrets } = await logWith(0);
    const { header, signer } = await signerOf(dir, secrets.secret!);
    const audit = await AuditLog.open({
      dir,
      partitionId: header.id,
      auditKey: header.auditKey,
      sync: async (handle) => {
        await new Promise((resolve) => setTimeout(resolve, 20));
        await handle.datasync();
      },
    });
    audit.setSigner(signer);
    await Promise.all(Array.from({ length: 200 }, (_, i) => audit.append(event(i))));
    const stats = audit.stats();
    await audit.close();
    expect(stats.records).toBe(200);
    expect(stats.syncs).toBeLessThanOrEqual(3);
    // The head is signed off the answers' path (issue #22): at latest when the log closes.
    expect(audit.stats().anchoredSeq).toBe(201);
    expect(await verifyAuditLog({ dir })).toMatchObject({ ok: true, records: 201, unanchored: 0 });
  });

  it('answers appends before signing the head, and signs the head soon after without a close', async () => {
    const { dir, secrets } = await logWith(0);
    const { header, signer } = await signerOf(dir, secrets.secret!);
    const audit = await AuditLog.open({ dir, partitionId: header.id, auditKey: header.auditKey });
    audit.setSigner(signer);
    await Promise.all(Array.from({ length: 20 }, (_, i) => audit.append(event(i))));
    const lastSeq = audit.stats().lastSeq;
    expect(audit.stats().anchoredSeq).toBeLessThan(lastSeq);
    const deadline = Date.now() + 2000;
    while (audit.stats().anchoredSeq < lastSeq && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(audit.stats().anchoredSeq).toBe(lastSeq);
    // On disk already, while the log is still open: a crash now would lose no anchor.
    expect(await verifyAuditLog({ dir })).toMatchObject({ ok: true, anchoredSeq: lastSeq, unanchored: 0 });
    await audit.close();
  });

  it('syncs the next group beside a slow one but answers strictly in order', async () => {
    const { dir, secrets } = await logWith(0);
    const { header } = await signerOf(dir, secrets.secret!);
    let calls = 0;
    const audit = await AuditLog.open({
      dir,
      partitionId: header.id,
      auditKey: header.auditKey,
      // The first group's sync is slow, the second's fast: the second must still wait for the first.
      sync: async (handle) => {
        calls += 1;
        if (calls === 1) await new Promise((resolve) => setTimeout(resolve, 100));
        await handle.datasync();
      },
    });
    const order: number[] = [];
    const first = audit.append(event(1)).then(() => order.push(1));
    await new Promise((resolve) => setTimeout(resolve, 20));
    const second = audit.append(event(2)).then(() => order.push(2));
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect(calls).toBe(2);
    expect(order).toEqual([]);
    await Promise.all([first, second]);
    expect(order).toEqual([1, 2]);
    await audit.close();
  });

  it('fails a group whose own sync succeeded when a group before it failed', async () => {
    const { dir, secrets } = await logWith(0);
    const { header } = await signerOf(dir, secrets.secret!);
    let calls = 0;
    const audit = await AuditLog.open({
      dir,
      partitionId: header.id,
      auditKey: header.auditKey,
      sync: async () => {
        calls += 1;
        if (calls === 1) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          throw new Error('EIO');
        }
      },
    });
    const first = audit.append(event(1));
    first.catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 10));
    const second = audit.append(event(2));
    await expect(first).rejects.toMatchObject({ rv: 'CKR_DEVICE_ERROR' });
    await expect(second).rejects.toMatchObject({ rv: 'CKR_DEVICE_ERROR' });
    expect(calls).toBe(2);
    await audit.close();
  });

  it('refuses every append after a failed write, since the tail is then uncertain', async () => {
    const { dir, secrets } = await logWith(0);
    const { header } = await signerOf(dir, secrets.secret!);
    let fail = true;
    const audit = await AuditLog.open({
      dir,
      partitionId: header.id,
      auditKey: header.auditKey,
      sync: async () => {
        if (fail) throw new Error('EIO');
      },
    });
    await expect(audit.append(event(1))).rejects.toMatchObject({ rv: 'CKR_DEVICE_ERROR' });
    fail = false;
    await expect(audit.append(event(2))).rejects.toThrow(/failed an earlier write/);
    await audit.close();
  });

  test.each([
    ['a digest that is not SHA-256 hex', { digest: 'xyz' }],
    ['an unknown purpose', { purpose: 'nonsense' as AuditEvent['purpose'] }],
    ['no op', { op: '' }],
    ['a negative length', { length: -1 }],
  ])('refuses an event with %s without breaking the chain', async (_name, extra) => {
    const { dir, secrets } = await logWith(0);
    const folder = await openPartitionVault({ dir });
    await folder.unseal({ secret: secrets.secret! });
    const error = await folder.audit.append(event(1, extra)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HsmError);
    await folder.audit.append(event(2));
    await folder.close();
    expect(await verifyAuditLog({ dir })).toMatchObject({ ok: true, records: 2 });
  });

  it('anchors records appended while sealed once the partition is unsealed', async () => {
    const { dir, secrets } = await logWith(0);
    let folder = await openPartitionVault({ dir });
    await folder.audit.append(event(1, { op: 'unseal', result: 'hsm.unseal_failed' }));
    await folder.close();
    expect(await verifyAuditLog({ dir })).toMatchObject({
      ok: true,
      records: 2,
      anchoredSeq: 1,
      unanchored: 1,
    });
    folder = await openPartitionVault({ dir });
    await folder.unseal({ secret: secrets.secret! });
    await folder.audit.append(event(2, { op: 'unseal' }));
    await folder.close();
    expect(await verifyAuditLog({ dir })).toMatchObject({
      ok: true,
      records: 3,
      anchoredSeq: 3,
      unanchored: 0,
    });
  });

  it('cuts off a last line a crash tore (never acknowledged) and continues the chain', async () => {
    const { dir, secrets, path } = await logWith(2);
    const header = parseHeader(readFileSync(join(dir, HEADER_FILE)), HEADER_FILE);
    const all = lines(path);
    const last = JSON.parse(all[all.length - 1]!);
    const torn = chainRecord(event(9), last.seq + 1, last.hash).line.slice(0, 40);
    writeFileSync(path, readFileSync(path, 'utf8') + torn);
    expect(await verifyAuditLog({ dir })).toMatchObject({ ok: false, kind: 'truncated' });
    const folder = await openPartitionVault({ dir });
    await folder.unseal({ secret: secrets.secret! });
    await folder.audit.append(event(3));
    await folder.close();
    expect(header.id).toBeTruthy();
    expect(await verifyAuditLog({ dir })).toMatchObject({ ok: true, records: 4 });
  });
});

describe('verifyAuditLog', () => {
  it('answers OK for an untouched log', async () => {
    const { dir } = await logWith(5);
    expect(await verifyAuditLog({ dir })).toEqual({ ok: true, records: 6, anchoredSeq: 6, unanchored: 0 });
  });

  test.each([
    [
      'an edited record',
      (all: string[]) => {
        all[2] = all[2]!.replace('"result":"ok"', '"result":"hsm.pin_incorrect"');
      },
      { kind: 'edited', seq: 3, line: 3 },
    ],
    [
      'a deleted record',
      (all: string[]) => {
        all.splice(2, 1);
      },
      { kind: 'deleted', seq: 3, line: 3 },
    ],
    [
      'two reordered records',
      (all: string[]) => {
        [all[2], all[3]] = [all[3]!, all[2]!];
      },
      { kind: 'reordered', seq: 4, line: 3 },
    ],
    [
      'a repeated record',
      (all: string[]) => {
        all.splice(4, 0, all[1]!);
      },
      { kind: 'reordered', seq: 2, line: 5 },
    ],
    [
      'records cut off the end',
      (all: string[]) => {
        all.splice(4);
      },
      { kind: 'truncated', seq: 5 },
    ],
    [
      'the last record removed',
      (all: string[]) => {
        all.pop();
      },
      { kind: 'truncated', seq: 6 },
    ],
    [
      'a record edited and the rest of the chain recomputed',
      (all: string[]) => {
        let prev = JSON.parse(all[1]!).hash;
        for (let i = 2; i < all.length; i++) {
          const record = JSON.parse(all[i]!);
          if (i === 2) record.result = 'hsm.pin_incorrect';
          record.prevHash = prev;
          record.hash = recordHash(record);
          prev = record.hash;
          all[i] = serializeRecord(record).trimEnd();
        }
      },
      { kind: 'edited', seq: 6 },
    ],
    [
      'a line that is not a record',
      (all: string[]) => {
        all[1] = 'garbage';
      },
      { kind: 'malformed', line: 2 },
    ],
  ])('finds %s', async (_name, tamper, expected) => {
    const { dir, path } = await logWith(5);
    const all = lines(path);
    tamper(all);
    writeLines(path, all);
    expect(await verifyAuditLog({ dir })).toMatchObject({ ok: false, ...expected });
  });

  it('finds a log cut inside its last record', async () => {
    const { dir, path } = await logWith(3);
    truncateSync(path, readFileSync(path).length - 10);
    expect(await verifyAuditLog({ dir })).toMatchObject({ ok: false, kind: 'truncated' });
  });

  it('finds a removed head file, which would otherwise hide truncation', async () => {
    const { dir } = await logWith(3);
    unlinkSync(join(dir, 'audit.head'));
    expect(await verifyAuditLog({ dir })).toMatchObject({ ok: false, kind: 'head' });
  });

  it('never passes silently when the head file is altered', async () => {
    const { dir } = await logWith(3);
    const head = join(dir, 'audit.head');
    const pristine = readFileSync(head);
    for (let offset = 0; offset < pristine.length; offset += 7) {
      const damaged = Buffer.from(pristine);
      damaged[offset]! ^= 0x02;
      writeFileSync(head, damaged);
      const result = await verifyAuditLog({ dir });
      const flagged = !result.ok || result.warning !== undefined;
      expect(flagged, `flip at ${offset}`).toBe(true);
    }
  });

  it('is refused by the partition at open when the log was cut short', async () => {
    const { dir, path } = await logWith(3);
    const all = lines(path);
    writeLines(path, all.slice(0, 2));
    const error = await openPartitionVault({ dir }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HsmError);
    expect((error as HsmError).rv).toBe('CKR_INTEGRITY_FAILED');
    expect((error as HsmError).message).toMatch(/audit\.log was truncated/);
  });
});

describe('exportAuditLog', () => {
  it('writes the records as JSON lines and reports the verification', async () => {
    const { dir, path } = await logWith(4);
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on('data', (chunk: Buffer) => chunks.push(chunk));
    const result = await exportAuditLog({ dir, out });
    const exported = Buffer.concat(chunks).toString('utf8');
    expect(result).toMatchObject({ records: 5, verification: { ok: true } });
    expect(exported).toBe(readFileSync(path, 'utf8'));
    for (const line of exported.trimEnd().split('\n')) expect(JSON.parse(line)).toHaveProperty('hash');
  });
});

describe('the record format', () => {
  const text = fc.string({ minLength: 1, maxLength: 40 });
  const eventArb = fc.record(
    {
      time: text,
      op: text,
      result: text,
      user: text,
      keyId: text,
      keyLabel: text,
      purpose: fc.constantFrom('certificate', 'crl', 'ocsp', 'other'),
      digest: fc.stringMatching(/^[0-9a-f]{64}$/),
      mechanism: fc.constantFrom('ecdsa-sha256', 'ed25519', 'rsa-pss-sha384'),
      length: fc.nat(),
      subject: text,
      session: fc.nat(),
      detail: text,
    },
    { requiredKeys: ['time', 'op', 'result'] },
  );

  it('stores each record as its canonical JSON (RFC 8785 member order), hashed without its hash', () => {
    fc.assert(
      fc.property(eventArb, fc.integer({ min: 1, max: 2 ** 40 }), (e, seq) => {
        const { record, line } = chainRecord(e as AuditEvent, seq, 'ab'.repeat(32));
        expect(line).toBe(`${canonicalJson(record)}\n`);
        const { hash, ...body } = record;
        expect(hash).toBe(sha256Hex(canonicalJson(body)));
        expect(serializeRecord(record)).toBe(line);
        expect(parseRecord(line.trimEnd())).toEqual(record);
      }),
      { numRuns: 300 },
    );
  });
});
