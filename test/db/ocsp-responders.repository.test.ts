import { beforeEach, expect, test } from 'vitest';
import { createOcspRespondersRepository } from '../../src/db/ocsp-responders.repository.ts';
import { describeEachDatabase } from '../helpers/database.ts';
import { manualClock, seedIssuer } from './builders.ts';

describeEachDatabase('the OCSP responders repository', (getDatabase) => {
  let clock: ReturnType<typeof manualClock>;
  let responders: ReturnType<typeof createOcspRespondersRepository>;
  beforeEach(async () => {
    clock = manualClock('2026-06-01T00:00:00.000Z');
    responders = createOcspRespondersRepository({ db: getDatabase().db, clock });
    await seedIssuer(getDatabase().db);
  });

  const responder = (id: string, notBefore: string, notAfter: string) => ({
    id,
    issuerId: 'dev-intermediate',
    certificateDer: Uint8Array.from([0x30, 0x00]),
    keyUri: `hsm:partition=issuing;label=${id}`,
    notBefore: new Date(notBefore),
    notAfter: new Date(notAfter),
  });

  test('findActive picks the active responder valid now with the latest notAfter', async () => {
    await responders.create(responder('ocsp-2025', '2025-01-01T00:00:00Z', '2026-03-01T00:00:00Z'));
    await responders.create(responder('ocsp-2026a', '2026-01-01T00:00:00Z', '2026-09-01T00:00:00Z'));
    await responders.create(responder('ocsp-2026b', '2026-05-01T00:00:00Z', '2026-12-01T00:00:00Z'));
    await responders.create(responder('ocsp-future', '2026-07-01T00:00:00Z', '2027-07-01T00:00:00Z'));
    expect((await responders.findActive('dev-intermediate'))?.id).toBe('ocsp-2026b');
    expect(await responders.setStatus('ocsp-2026b', 'retired')).toBe(true);
    expect((await responders.findActive('dev-intermediate'))?.id).toBe('ocsp-2026a');
    expect((await responders.findActive('dev-intermediate', new Date('2027-01-01T00:00:00Z')))?.id).toBe(
      'ocsp-future',
    );
    expect(await responders.findActive('dev-intermediate', new Date('2028-01-01T00:00:00Z'))).toBeNull();
    expect((await responders.listForIssuer('dev-intermediate')).map((r) => r.id)).toEqual([
      'ocsp-future',
      'ocsp-2026b',
      'ocsp-2026a',
      'ocsp-2025',
    ]);
  });

  test('create refuses a taken id, a non-slug id and an empty validity', async () => {
    await responders.create(responder('ocsp-a', '2026-01-01T00:00:00Z', '2027-01-01T00:00:00Z'));
    await expect(
      responders.create(responder('ocsp-a', '2026-01-01T00:00:00Z', '2027-01-01T00:00:00Z')),
    ).rejects.toMatchObject({ code: 'ocsp_responder.exists' });
    await expect(
      responders.create(responder('OCSP A', '2026-01-01T00:00:00Z', '2027-01-01T00:00:00Z')),
    ).rejects.toBeInstanceOf(TypeError);
    await expect(
      responders.create(responder('ocsp-b', '2027-01-01T00:00:00Z', '2027-01-01T00:00:00Z')),
    ).rejects.toBeInstanceOf(TypeError);
    expect(await responders.setStatus('nope', 'retired')).toBe(false);
    expect(await responders.get('nope')).toBeNull();
  });
});
