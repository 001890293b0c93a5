import { beforeEach, expect, test } from 'vitest';
import { createReplayGuardRepository } from '../../src/db/replay-guard.repository.ts';
import { describeEachDatabase } from '../helpers/database.ts';
import { manualClock } from './builders.ts';

describeEachDatabase('the replay guard', (getDatabase) => {
  let clock: ReturnType<typeof manualClock>;
  let guard: ReturnType<typeof createReplayGuardRepository>;
  beforeEach(() => {
    clock = manualClock();
    guard = createReplayGuardRepository({ db: getDatabase().db, clock });
  });
  const inFive = () => new Date(clock.now().getTime() + 5 * 60_000);

  test('a jti is accepted once and refused as a replay until it expires', async () => {
    const claim = { scope: 'revoke-by-key:thumb1', jti: 'j-1', expiresAt: inFive() };
    expect(await guard.claim(claim)).toBe(true);
    expect(await guard.claim(claim)).toBe(false);
    expect(await guard.claim({ ...claim, scope: 'revoke-by-key:thumb2' })).toBe(true);
    clock.advance(5 * 60_000);
    expect(await guard.claim({ ...claim, expiresAt: inFive() })).toBe(true);
  });

  test('an already expired JWS is never accepted', async () => {
    expect(await guard.claim({ scope: 's', jti: 'j', expiresAt: clock.now() })).toBe(false);
  });

  test('concurrent claims of one jti succeed exactly once', async () => {
    const claim = { scope: 's', jti: 'j-race', expiresAt: inFive() };
    const results = await Promise.all(Array.from({ length: 20 }, () => guard.claim(claim)));
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  test('purgeExpired removes only expired claims', async () => {
    await guard.claim({ scope: 's', jti: 'short', expiresAt: new Date(clock.now().getTime() + 1000) });
    await guard.claim({ scope: 's', jti: 'long', expiresAt: inFive() });
    clock.advance(1000);
    expect(await guard.purgeExpired()).toBe(1);
    expect(await guard.claim({ scope: 's', jti: 'long', expiresAt: inFive() })).toBe(false);
  });

  test.each([
    { name: 'an empty jti', jti: '' },
    { name: 'a jti over 512 characters', jti: 'j'.repeat(513) },
    { name: 'a jti with NUL', jti: 'a\u0000' },
  ])('claim refuses $name', async ({ jti }) => {
    await expect(guard.claim({ scope: 's', jti, expiresAt: inFive() })).rejects.toBeInstanceOf(TypeError);
  });
});
