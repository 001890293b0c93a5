import { beforeEach, expect, test } from 'vitest';
import { IssuerExistsError, IssuerNotFoundError } from '../../src/db/errors.ts';
import { createIssuersRepository, isIssuerId } from '../../src/db/issuers.repository.ts';
import { describeEachDatabase } from '../helpers/database.ts';
import { issuerInput, manualClock } from './builders.ts';

test.each([
  { id: 'dev-root', ok: true },
  { id: 'a', ok: true },
  { id: 'intermediate-2026', ok: true },
  { id: 'Dev-Root', ok: false },
  { id: '-root', ok: false },
  { id: 'root-', ok: false },
  { id: 'dev_root', ok: false },
  { id: '', ok: false },
  { id: 'a'.repeat(64), ok: true },
  { id: 'a'.repeat(65), ok: false },
  { id: '../etc', ok: false },
])('isIssuerId($id) is $ok', ({ id, ok }) => {
  expect(isIssuerId(id)).toBe(ok);
});

describeEachDatabase('the issuers repository', (getDatabase) => {
  let clock: ReturnType<typeof manualClock>;
  let repository: ReturnType<typeof createIssuersRepository>;
  beforeEach(() => {
    clock = manualClock();
    repository = createIssuersRepository({ db: getDatabase().db, clock });
  });

  test('create stores every field and get returns it', async () => {
    const input = issuerInput({ crlShards: 4 });
    const created = await repository.create(input);
    expect(created).toMatchObject({
      id: 'dev-intermediate',
      name: input.name,
      parentId: null,
      keyUri: input.keyUri,
      status: 'active',
      crlUrls: input.crlUrls,
      ocspUrls: input.ocspUrls,
      caIssuersUrls: input.caIssuersUrls,
      crlShards: 4,
      createdAt: clock.now(),
      updatedAt: clock.now(),
    });
    expect(await repository.get('dev-intermediate')).toEqual(created);
    expect((await repository.get('dev-intermediate'))!.certificateDer).toEqual(input.certificateDer);
    expect(await repository.get('nope')).toBeNull();
  });

  test('create refuses a taken id with IssuerExistsError', async () => {
    await repository.create(issuerInput());
    await expect(repository.create(issuerInput())).rejects.toBeInstanceOf(IssuerExistsError);
  });

  test.each([
    { name: 'an id that is not a slug', overrides: { id: 'Dev Root' } },
    { name: 'zero CRL shards', overrides: { crlShards: 0 } },
    { name: 'an unknown status', overrides: { status: 'paused' as 'active' } },
  ])('create refuses $name', async ({ overrides }) => {
    await expect(repository.create(issuerInput(overrides))).rejects.toBeInstanceOf(TypeError);
  });

  test('upsert replaces the fields and keeps the creation time', async () => {
    const first = await repository.upsert(issuerInput());
    clock.advance(60_000);
    const second = await repository.upsert(
      issuerInput({ name: 'Renamed', keyUri: 'hsm:partition=issuing;label=next' }),
    );
    expect(second).toMatchObject({ name: 'Renamed', keyUri: 'hsm:partition=issuing;label=next' });
    expect(second.createdAt).toEqual(first.createdAt);
    expect(second.updatedAt).toEqual(clock.now());
    expect(await repository.list()).toHaveLength(1);
  });

  test('setStatus changes the status and refuses an unknown issuer', async () => {
    await repository.create(issuerInput());
    expect((await repository.setStatus('dev-intermediate', 'disabled')).status).toBe('disabled');
    expect((await repository.get('dev-intermediate'))!.status).toBe('disabled');
    await expect(repository.setStatus('nope', 'active')).rejects.toBeInstanceOf(IssuerNotFoundError);
  });

  test('list returns the issuers by id and chain walks from an issuer up to its root', async () => {
    await repository.create(issuerInput({ id: 'dev-root', name: 'Root' }));
    await repository.create(issuerInput({ id: 'dev-intermediate', parentId: 'dev-root' }));
    await repository.create(issuerInput({ id: 'dev-issuing', parentId: 'dev-intermediate' }));
    expect((await repository.list()).map((i) => i.id)).toEqual([
      'dev-intermediate',
      'dev-issuing',
      'dev-root',
    ]);
    expect((await repository.chain('dev-issuing')).map((i) => i.id)).toEqual([
      'dev-issuing',
      'dev-intermediate',
      'dev-root',
    ]);
    expect((await repository.chain('dev-root')).map((i) => i.id)).toEqual(['dev-root']);
    await expect(repository.chain('nope')).rejects.toBeInstanceOf(IssuerNotFoundError);
  });
});
