import { beforeEach, expect, test } from 'vitest';
import { createCertificatesRepository } from '../../src/db/certificates.repository.ts';
import { openDatabase } from '../../src/db/database.ts';
import {
  CertificateNotFoundError,
  CertificateStateError,
  InvalidCursorError,
  SerialCollisionError,
} from '../../src/db/errors.ts';
import { formatSerialWithColons, generateSerial } from '../../src/lib/serial.ts';
import { describeEachDatabase } from '../helpers/database.ts';
import { fakeDer, manualClock, randomDigest, reservation, seedIssuer } from './builders.ts';

describeEachDatabase('the certificates repository', (getDatabase) => {
  let clock: ReturnType<typeof manualClock>;
  let certificates: ReturnType<typeof createCertificatesRepository>;

  beforeEach(async () => {
    clock = manualClock();
    certificates = createCertificatesRepository({ db: getDatabase().db, clock });
    await seedIssuer(getDatabase().db);
    await seedIssuer(getDatabase().db, { id: 'other-intermediate' });
  });

  async function issued(overrides: Parameters<typeof reservation>[0] = {}) {
    const r = reservation(overrides);
    await certificates.reservePending(r);
    await certificates.markIssued(r.serial, fakeDer(r.serial));
    return r;
  }

  test('a reservation is pending with its TBS hash and found by serial in any accepted spelling', async () => {
    const r = reservation({ serial: '00a1b2c3d4' });
    await certificates.reservePending(r);
    for (const spelling of ['00a1b2c3d4', 'A1B2C3D4', '00:A1:B2:C3:D4', formatSerialWithColons('a1b2c3d4')]) {
      const found = await certificates.findBySerial(spelling);
      expect(found?.serial).toBe('00a1b2c3d4');
    }
    const found = (await certificates.findBySerial(r.serial))!;
    expect(found).toMatchObject({
      status: 'pending',
      issuerId: 'dev-intermediate',
      policy: 'web-server',
      requester: 'k_test',
      subject: 'CN=www.example.com',
      sans: [{ type: 'dns', value: 'www.example.com' }],
      notBefore: r.notBefore,
      notAfter: r.notAfter,
      der: null,
      createdAt: clock.now(),
      crlShard: 0,
    });
    expect(found.tbsSha256).toEqual(r.tbsSha256);
    expect(found.csrSha256).toEqual(r.csrSha256);
    expect(found.tbsSha256.constructor).toBe(Uint8Array);
  });

  test('reserving a taken serial throws SerialCollisionError and leaves the first reservation intact', async () => {
    const first = reservation();
    await certificates.reservePending(first);
    const error = await certificates
      .reservePending(reservation({ serial: first.serial, policy: 'other' }))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SerialCollisionError);
    expect((error as SerialCollisionError).serial).toBe(first.serial);
    expect((await certificates.findBySerial(first.serial))?.policy).toBe('web-server');
  });

  test('serials are unique across the whole CA, not per issuer', async () => {
    const first = reservation();
    await certificates.reservePending(first);
    await expect(
      certificates.reservePending(reservation({ serial: first.serial, issuerId: 'other-intermediate' })),
    ).rejects.toBeInstanceOf(SerialCollisionError);
  });

  test.each([
    { name: 'a serial that is not canonical', overrides: { serial: 'A1B2' } },
    { name: 'a TBS hash that is not 32 octets', overrides: { tbsSha256: new Uint8Array(20) } },
    { name: 'a subject containing NUL', overrides: { subject: 'CN=a\u0000b' } },
    { name: 'an invalid notAfter', overrides: { notAfter: new Date('nope') } },
  ])('a reservation with $name is refused before reaching the database', async ({ overrides }) => {
    await expect(certificates.reservePending(reservation(overrides))).rejects.toBeInstanceOf(TypeError);
  });

  test('a batch reserves every free serial and reports taken and repeated ones', async () => {
    const taken = reservation();
    await certificates.reservePending(taken);
    const fresh = Array.from({ length: 5 }, () => reservation());
    const repeated = reservation({ serial: fresh[0]!.serial });
    const result = await certificates.reservePendingMany([
      ...fresh,
      reservation({ serial: taken.serial }),
      repeated,
    ]);
    expect(result.reserved).toEqual(fresh.map((r) => r.serial));
    expect(result.collided).toEqual([taken.serial, fresh[0]!.serial]);
    for (const r of fresh) {
      expect((await certificates.findBySerial(r.serial))?.tbsSha256).toEqual(r.tbsSha256);
    }
  });

  test('a batch larger than one statement reserves and stores every certificate', async () => {
    const batch = Array.from({ length: 640 }, () => reservation());
    const { reserved, collided } = await certificates.reservePendingMany(batch);
    expect(reserved).toHaveLength(640);
    expect(collided).toEqual([]);
    const { notStored } = await certificates.markIssuedMany(
      batch.map((r) => ({ serial: r.serial, der: fakeDer(r.serial) })),
    );
    expect(notStored).toEqual([]);
    expect((await certificates.countByStatus()).good).toBe(640);
  });

  test('markIssued stores the DER byte for byte and makes the certificate good', async () => {
    const r = reservation();
    await certificates.reservePending(r);
    const der = fakeDer(r.serial);
    clock.advance(1500);
    expect(await certificates.markIssued(r.serial, der)).toBe('good');
    const found = (await certificates.findBySerial(r.serial))!;
    expect(found.status).toBe('good');
    expect(found.der).toEqual(der);
    expect(found.der!.constructor).toBe(Uint8Array);
    expect(found.issuedAt).toEqual(clock.now());
  });

  test('markIssued with the same DER again is a no-op and with another DER is refused', async () => {
    const r = reservation();
    await certificates.reservePending(r);
    const der = fakeDer(r.serial);
    await certificates.markIssued(r.serial, der);
    expect(await certificates.markIssued(r.serial, der)).toBe('good');
    await expect(certificates.markIssued(r.serial, fakeDer(r.serial))).rejects.toBeInstanceOf(
      CertificateStateError,
    );
    expect((await certificates.findBySerial(r.serial))?.der).toEqual(der);
  });

  test('markIssued for an unknown serial throws CertificateNotFoundError', async () => {
    await expect(certificates.markIssued('0badc0de', fakeDer('x'))).rejects.toBeInstanceOf(
      CertificateNotFoundError,
    );
  });

  test('a certificate revoked while pending keeps its revocation when its DER is stored', async () => {
    const r = reservation();
    await certificates.reservePending(r);
    await certificates.revoke(r.serial, { reason: 'superseded', revokedAt: clock.now() });
    expect(await certificates.markIssued(r.serial, fakeDer(r.serial))).toBe('revoked');
    const found = (await certificates.findBySerial(r.serial))!;
    expect(found.status).toBe('revoked');
    expect(found.der).not.toBeNull();
  });

  test('a certificate signed after its reservation was marked failed is still stored, as good', async () => {
    const r = reservation();
    await certificates.reservePending(r);
    expect(await certificates.markFailed(r.serial, 'hsm timeout')).toBe(true);
    expect((await certificates.findBySerial(r.serial))?.failureReason).toBe('hsm timeout');
    expect(await certificates.markIssued(r.serial, fakeDer(r.serial))).toBe('good');
    expect((await certificates.findBySerial(r.serial))?.failureReason).toBeNull();
  });

  test('markFailed changes only pending reservations', async () => {
    const r = await issued();
    expect(await certificates.markFailed(r.serial, 'late')).toBe(false);
    expect((await certificates.findBySerial(r.serial))?.status).toBe('good');
  });

  test('markIssuedMany stores a batch and names the serials it could not store', async () => {
    const batch = Array.from({ length: 3 }, () => reservation());
    await certificates.reservePendingMany(batch);
    await certificates.markIssued(batch[2]!.serial, fakeDer(batch[2]!.serial));
    const { notStored } = await certificates.markIssuedMany([
      ...batch.map((r) => ({ serial: r.serial, der: fakeDer(r.serial) })),
      { serial: '0badc0de', der: fakeDer('x') },
    ]);
    expect(notStored).toEqual([batch[2]!.serial, '0badc0de']);
    expect((await certificates.findBySerial(batch[0]!.serial))?.status).toBe('good');
  });

  test('revoking again keeps the first revocation unless the new reason is keyCompromise', async () => {
    const r = await issued();
    const firstTime = clock.now();
    const first = await certificates.revoke(r.serial, { reason: 'superseded', revokedAt: firstTime });
    expect(first).toEqual({
      outcome: 'revoked',
      revocation: {
        serial: r.serial,
        issuerId: 'dev-intermediate',
        crlShard: 0,
        revokedAt: firstTime,
        reason: 'superseded',
        invalidityDate: null,
      },
    });

    clock.advance(60_000);
    const again = await certificates.revoke(r.serial, {
      reason: 'cessationOfOperation',
      revokedAt: clock.now(),
    });
    expect(again).toEqual({ ...first, outcome: 'unchanged' });

    clock.advance(60_000);
    const compromisedAt = new Date('2026-02-27T00:00:00.000Z');
    const updated = await certificates.revoke(r.serial, {
      reason: 'keyCompromise',
      revokedAt: clock.now(),
      invalidityDate: compromisedAt,
    });
    expect(updated).toEqual({
      outcome: 'reason_updated',
      revocation: { ...first.revocation, reason: 'keyCompromise', invalidityDate: compromisedAt },
    });

    const once = await certificates.revoke(r.serial, { reason: 'keyCompromise', revokedAt: clock.now() });
    expect(once.outcome).toBe('unchanged');
    const status = await certificates.findStatus(r.serial);
    expect(status).toMatchObject({
      status: 'revoked',
      revokedAt: firstTime,
      revocationReason: 'keyCompromise',
      invalidityDate: compromisedAt,
    });
  });

  test('listCrlShards names each shard with certificates and its latest notAfter, leaving out failed ones', async () => {
    expect(await certificates.listCrlShards('dev-intermediate')).toEqual([]);
    await issued({ crlShard: 0, notAfter: new Date('2026-05-01T00:00:00.000Z') });
    await issued({ crlShard: 0, notAfter: new Date('2026-07-01T00:00:00.000Z') });
    await issued({ crlShard: 3, notAfter: new Date('2026-06-01T00:00:00.000Z') });
    const failed = reservation({ crlShard: 5, notAfter: new Date('2027-01-01T00:00:00.000Z') });
    await certificates.reservePending(failed);
    await certificates.markFailed(failed.serial, 'refused');
    await issued({ issuerId: 'other-intermediate', crlShard: 1 });
    expect(await certificates.listCrlShards('dev-intermediate')).toEqual([
      { shard: 0, lastCertificateExpiry: new Date('2026-07-01T00:00:00.000Z') },
      { shard: 3, lastCertificateExpiry: new Date('2026-06-01T00:00:00.000Z') },
    ]);
  });

  test('a pending reservation can be revoked, since it may already have been signed', async () => {
    const r = reservation();
    await certificates.reservePending(r);
    const result = await certificates.revoke(r.serial, { reason: 'unspecified', revokedAt: clock.now() });
    expect(result.outcome).toBe('revoked');
  });

  test('revoking an unknown or failed serial throws CertificateNotFoundError', async () => {
    await expect(
      certificates.revoke('0badc0de', { reason: 'unspecified', revokedAt: clock.now() }),
    ).rejects.toBeInstanceOf(CertificateNotFoundError);
    const r = reservation();
    await certificates.reservePending(r);
    await certificates.markFailed(r.serial, 'refused by the HSM');
    await expect(
      certificates.revoke(r.serial, { reason: 'unspecified', revokedAt: clock.now() }),
    ).rejects.toBeInstanceOf(CertificateNotFoundError);
  });

  test.each(['certificateHold', 'removeFromCRL', 'KeyCompromise', ''])(
    'the reason %j is refused',
    async (reason) => {
      const r = await issued();
      await expect(
        certificates.revoke(r.serial, { reason: reason as 'unspecified', revokedAt: clock.now() }),
      ).rejects.toBeInstanceOf(TypeError);
    },
  );

  test('list pages newest first through every certificate exactly once, even with equal creation times', async () => {
    const serials: string[] = [];
    for (let i = 0; i < 7; i++) {
      // Three certificates share each creation time: the serial breaks the tie.
      if (i % 3 === 0) clock.advance(1000);
      serials.push((await issued()).serial);
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await certificates.list({ limit: 3, cursor });
      seen.push(...page.items.map((c) => c.serial));
      cursor = page.nextCursor ?? undefined;
      pages += 1;
      expect(page.items.every((c) => !('der' in c))).toBe(true);
    } while (cursor);
    expect(pages).toBe(3);
    expect(new Set(seen).size).toBe(7);
    expect(seen.sort()).toEqual([...serials].sort());
    const all = (await certificates.list({ limit: 100 })).items;
    const times = all.map((c) => c.createdAt.getTime());
    expect(times).toEqual([...times].sort((a, b) => b - a));
  });

  test('list filters by status, policy, issuer, requester and expiry', async () => {
    const a = await issued({ policy: 'web-server', notAfter: new Date('2026-04-01T00:00:00Z') });
    const b = await issued({
      policy: 'spiffe',
      requester: 'k_other',
      notAfter: new Date('2026-05-01T00:00:00Z'),
    });
    const c = await issued({ issuerId: 'other-intermediate', notAfter: new Date('2026-06-01T00:00:00Z') });
    await certificates.revoke(c.serial, { reason: 'superseded', revokedAt: clock.now() });
    const pending = reservation();
    await certificates.reservePending(pending);

    const serialsOf = async (filter: Parameters<typeof certificates.list>[0]) =>
      (await certificates.list(filter)).items.map((x) => x.serial).sort();
    expect(await serialsOf({ status: 'good' })).toEqual([a.serial, b.serial].sort());
    expect(await serialsOf({ status: ['revoked', 'pending'] })).toEqual([c.serial, pending.serial].sort());
    expect(await serialsOf({ policy: 'spiffe' })).toEqual([b.serial]);
    expect(await serialsOf({ issuerId: 'other-intermediate' })).toEqual([c.serial]);
    expect(await serialsOf({ requester: 'k_other' })).toEqual([b.serial]);
    expect(await serialsOf({ expiresBefore: new Date('2026-05-01T00:00:00Z') })).toEqual([a.serial]);
    expect(
      await serialsOf({
        expiresAfter: new Date('2026-05-01T00:00:00Z'),
        expiresBefore: new Date('2026-06-01T00:00:00Z'),
      }),
    ).toEqual([b.serial]);
  });

  test('list finds certificates by a SAN they name, of any type or of the type given, and nothing else', async () => {
    const www = await issued({
      sans: [
        { type: 'dns', value: 'www.example.com' },
        { type: 'dns', value: 'example.com' },
      ],
    });
    const api = await issued({ sans: [{ type: 'dns', value: 'api.example.com' }] });
    const ip = await issued({ sans: [{ type: 'ip', value: '192.0.2.10' }] });
    const mail = await issued({ sans: [{ type: 'email', value: 'ops@example.com' }] });
    const serialsOf = async (san: { type?: string; value: string }) =>
      (await certificates.list({ san })).items.map((x) => x.serial).sort();
    expect(await serialsOf({ value: 'example.com' })).toEqual([www.serial]);
    expect(await serialsOf({ type: 'dns', value: 'api.example.com' })).toEqual([api.serial]);
    expect(await serialsOf({ value: '192.0.2.10' })).toEqual([ip.serial]);
    expect(await serialsOf({ type: 'dns', value: '192.0.2.10' })).toEqual([]);
    expect(await serialsOf({ type: 'email', value: 'ops@example.com' })).toEqual([mail.serial]);
    // Containment of whole values: a prefix or a suffix of a name is not the name.
    expect(await serialsOf({ value: 'www.example' })).toEqual([]);
    expect(await serialsOf({ value: 'xample.com' })).toEqual([]);
    // Characters that mean something in JSON or SQL are only characters here.
    expect(await serialsOf({ value: `"}]' or 1=1 --` })).toEqual([]);
  });

  test.each([
    { name: 'garbage', cursor: '!!!' },
    { name: 'base64 of non-JSON', cursor: Buffer.from('hello').toString('base64url') },
    { name: 'a cursor of another shape', cursor: Buffer.from('[1,"x","y"]').toString('base64url') },
    { name: 'a cursor with a wrong version', cursor: Buffer.from('[2,1,"01"]').toString('base64url') },
    { name: 'an over-long cursor', cursor: 'a'.repeat(10_000) },
  ])('list refuses $name as a cursor with InvalidCursorError', async ({ cursor }) => {
    await expect(certificates.list({ cursor })).rejects.toBeInstanceOf(InvalidCursorError);
  });

  test('listRevokedForCrl gives one issuer shard its revoked, unexpired certificates, paged by serial', async () => {
    const revoked: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await issued();
      await certificates.revoke(r.serial, { reason: 'keyCompromise', revokedAt: clock.now() });
      revoked.push(r.serial);
    }
    const expired = await issued({ notAfter: new Date('2026-01-01T00:00:00Z') });
    await certificates.revoke(expired.serial, { reason: 'superseded', revokedAt: clock.now() });
    const otherShard = await issued({ crlShard: 1 });
    await certificates.revoke(otherShard.serial, { reason: 'superseded', revokedAt: clock.now() });
    const otherIssuer = await issued({ issuerId: 'other-intermediate' });
    await certificates.revoke(otherIssuer.serial, { reason: 'superseded', revokedAt: clock.now() });
    await issued(); // good, not on any CRL

    const cutoff = new Date('2026-02-01T00:00:00Z');
    const first = await certificates.listRevokedForCrl('dev-intermediate', {
      expiredBefore: cutoff,
      limit: 3,
    });
    const rest = await certificates.listRevokedForCrl('dev-intermediate', {
      expiredBefore: cutoff,
      afterSerial: first.at(-1)!.serial,
      limit: 3,
    });
    const listed = [...first, ...rest].map((e) => e.serial);
    expect(listed).toEqual([...revoked].sort());
    expect(first[0]).toMatchObject({ reason: 'keyCompromise', revokedAt: clock.now(), invalidityDate: null });

    const withExpired = await certificates.listRevokedForCrl('dev-intermediate', { limit: 100 });
    expect(withExpired.map((e) => e.serial)).toContain(expired.serial);
    const shardOne = await certificates.listRevokedForCrl('dev-intermediate', { shard: 1 });
    expect(shardOne.map((e) => e.serial)).toEqual([otherShard.serial]);
  });

  test('streamRevokedForCrl yields every entry across many pages in serial order', async () => {
    const batch = Array.from({ length: 25 }, () => reservation());
    await certificates.reservePendingMany(batch);
    for (const r of batch)
      await certificates.revoke(r.serial, { reason: 'superseded', revokedAt: clock.now() });
    const streamed: string[] = [];
    for await (const entry of certificates.streamRevokedForCrl('dev-intermediate', { pageSize: 4 })) {
      streamed.push(entry.serial);
    }
    expect(streamed).toEqual(batch.map((r) => r.serial).sort());
  });

  test('streamRevocationChangesSince yields revocations and keyCompromise updates made after a time', async () => {
    const early = await issued();
    const late = await issued();
    const updatedLater = await issued();
    await certificates.revoke(early.serial, { reason: 'superseded', revokedAt: clock.now() });
    await certificates.revoke(updatedLater.serial, { reason: 'superseded', revokedAt: clock.now() });
    const base = clock.now();
    clock.advance(1000);
    await certificates.revoke(late.serial, { reason: 'affiliationChanged', revokedAt: clock.now() });
    clock.advance(1000);
    await certificates.revoke(updatedLater.serial, { reason: 'keyCompromise', revokedAt: clock.now() });

    const changes: { serial: string; reason: string }[] = [];
    for await (const entry of certificates.streamRevocationChangesSince('dev-intermediate', base, {
      pageSize: 1,
    })) {
      changes.push({ serial: entry.serial, reason: entry.reason });
    }
    expect(changes).toEqual([
      { serial: late.serial, reason: 'affiliationChanged' },
      { serial: updatedLater.serial, reason: 'keyCompromise' },
    ]);
  });

  test('listBySpkiSha256 finds certificates by key, newest first', async () => {
    const spki = randomDigest();
    const a = await issued({ spkiSha256: spki });
    clock.advance(1000);
    const b = await issued({ spkiSha256: spki });
    await issued();
    expect((await certificates.listBySpkiSha256(spki)).map((c) => c.serial)).toEqual([b.serial, a.serial]);
  });

  test('countByStatus counts every status, per issuer on request', async () => {
    await issued();
    await issued({ issuerId: 'other-intermediate' });
    const revoked = await issued();
    await certificates.revoke(revoked.serial, { reason: 'superseded', revokedAt: clock.now() });
    const failed = reservation();
    await certificates.reservePending(failed);
    await certificates.markFailed(failed.serial, 'refused');
    await certificates.reservePending(reservation());
    expect(await certificates.countByStatus()).toEqual({ pending: 1, good: 2, revoked: 1, failed: 1 });
    expect(await certificates.countByStatus({ issuerId: 'other-intermediate' })).toEqual({
      pending: 0,
      good: 1,
      revoked: 0,
      failed: 0,
    });
  });

  test('many concurrent reservations of overlapping serials never store a serial twice', async () => {
    // 200 reservations over 20 serials: each serial must be won by exactly one of them.
    const serials = Array.from({ length: 20 }, () => generateSerial());
    const attempts = Array.from({ length: 200 }, (_, i) => reservation({ serial: serials[i % 20]! }));
    const results = await Promise.allSettled(attempts.map((r) => certificates.reservePending(r)));
    const won = results.filter((r) => r.status === 'fulfilled').length;
    const lost = results.filter((r) => r.status === 'rejected');
    expect(won).toBe(20);
    expect(lost).toHaveLength(180);
    for (const r of lost) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(SerialCollisionError);
    const stored = await certificates.list({ limit: 1000 });
    expect(stored.items.map((c) => c.serial).sort()).toEqual([...serials].sort());
  });

  test('concurrent batches from two database handles (two nodes) never reserve the same serial twice', async (context) => {
    const database = getDatabase();
    // The embedded database has one process and one connection: two nodes need PostgreSQL.
    if (!('url' in database.target)) context.skip();
    const second = await openDatabase(database.target);
    try {
      const nodeB = createCertificatesRepository({ db: second.db, clock });
      const serials = Array.from({ length: 300 }, () => generateSerial());
      const batches = (offset: number) =>
        Array.from({ length: 6 }, (_, b) =>
          Array.from({ length: 100 }, (_, i) =>
            reservation({ serial: serials[(offset + b * 50 + i) % 300]! }),
          ),
        );
      const results = await Promise.all([
        ...batches(0).map((batch) => certificates.reservePendingMany(batch)),
        ...batches(25).map((batch) => nodeB.reservePendingMany(batch)),
      ]);
      const reserved = results.flatMap((r) => r.reserved);
      expect(new Set(reserved).size).toBe(reserved.length);
      expect(new Set(reserved)).toEqual(new Set(serials));
      expect((await certificates.countByStatus()).pending).toBe(300);
    } finally {
      await second.close();
    }
  });
});
