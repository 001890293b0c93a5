import { beforeEach, expect, test } from 'vitest';
import { createNonceService } from '../../src/acme/nonces.ts';
import { type AcmeRepository, createAcmeRepository } from '../../src/db/acme.repository.ts';
import { openDatabase } from '../../src/db/database.ts';
import { describeEachDatabase } from '../helpers/database.ts';
import { manualClock } from './builders.ts';

describeEachDatabase('the ACME repository', (getDatabase) => {
  let clock: ReturnType<typeof manualClock>;
  let repository: AcmeRepository;
  beforeEach(() => {
    clock = manualClock();
    repository = createAcmeRepository({ db: getDatabase().db, clock });
  });

  const account = (id = 'acct-1', thumbprint = 'thumb-1') =>
    repository.createAccount({
      id,
      directory: 'dev',
      keyThumbprint: thumbprint,
      keyJwk: { kty: 'EC', crv: 'P-256', x: 'x', y: 'y' },
      contact: [],
      termsOfServiceAgreed: true,
    });

  async function order(id = 'order-1', expiresInMs = 3600_000) {
    await account();
    return repository.createOrder({
      id,
      accountId: 'acct-1',
      identifiers: [{ type: 'dns', value: 'www.example.com' }],
      expiresAt: new Date(clock.now().getTime() + expiresInMs),
      authorizationIds: [`${id}-authz`],
      newAuthorizations: [
        {
          id: `${id}-authz`,
          identifierType: 'dns',
          identifierValue: 'www.example.com',
          wildcard: false,
          expiresAt: new Date(clock.now().getTime() + expiresInMs),
          challenges: [
            { id: `${id}-http`, type: 'http-01', token: 't1' },
            { id: `${id}-dns`, type: 'dns-01', token: 't2' },
          ],
        },
      ],
    });
  }

  test('a nonce is taken once, by whichever node, and not after it expires', async () => {
    const nonces = createNonceService({ repository, clock, lifetimeMs: 60_000 });
    const nonce = await nonces.issue();
    // On PostgreSQL the other node has its own connections; PGlite has one process, one handle.
    const { kind, target } = getDatabase();
    const second = kind === 'postgres' ? await openDatabase(target, { migrate: false }) : undefined;
    const other = createNonceService({
      repository: createAcmeRepository({ db: second?.db ?? getDatabase().db, clock }),
      clock,
      lifetimeMs: 60_000,
    });
    expect(await other.consume(nonce)).toBe(true);
    expect(await nonces.consume(nonce)).toBe(false);
    await second?.close();
    const late = await nonces.issue();
    clock.advance(60_000);
    expect(await nonces.consume(late)).toBe(false);
    expect(await nonces.consume('not-a-nonce')).toBe(false);
  });

  test('concurrent uses of one nonce succeed exactly once', async () => {
    const nonces = createNonceService({ repository, clock, lifetimeMs: 60_000 });
    const nonce = await nonces.issue();
    const results = await Promise.all(Array.from({ length: 20 }, () => nonces.consume(nonce)));
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  test('one account per key and directory: a second create finds the first', async () => {
    const first = await account('a1', 'same-key');
    const second = await account('a2', 'same-key');
    expect([first.created, second.created, second.account.id]).toEqual([true, false, 'a1']);
    const deactivated = await repository.updateAccount('a1', { status: 'deactivated' });
    expect(deactivated?.status).toBe('deactivated');
    // Deactivation is final (RFC 8555 §7.3.6).
    expect((await repository.updateAccount('a1', { contact: ['mailto:x@example.com'] }))?.contact).toEqual(
      [],
    );
  });

  test('an order comes back with its authorizations and their challenges in order', async () => {
    await order();
    expect((await repository.findOrder('order-1'))?.authorizationIds).toEqual(['order-1-authz']);
    const [authorization] = await repository.findAuthorizations(['order-1-authz']);
    expect(authorization?.challenges.map((c) => c.type)).toEqual(['http-01', 'dns-01']);
  });

  test('a challenge starts once, finishes once, and makes its authorization valid', async () => {
    await order();
    const lease = new Date(clock.now().getTime() + 60_000);
    expect(
      await Promise.all([
        repository.startChallenge('order-1-http', lease),
        repository.startChallenge('order-1-http', lease),
      ]),
    ).toEqual(expect.arrayContaining([true, false]));
    expect(await repository.startChallenge('order-1-dns', lease)).toBe(true);
    const expires = new Date(clock.now().getTime() + 86_400_000);
    expect(
      await repository.finishChallenge('order-1-http', { status: 'valid', authorizationExpiresAt: expires }),
    ).toBe(true);
    expect(
      await repository.finishChallenge('order-1-http', {
        status: 'invalid',
        error: { type: 't', detail: 'd' },
      }),
    ).toBe(false);
    // The other challenge finishing later does not undo the valid authorization.
    expect(
      await repository.finishChallenge('order-1-dns', {
        status: 'invalid',
        error: { type: 't', detail: 'd' },
      }),
    ).toBe(true);
    const [authorization] = await repository.findAuthorizations(['order-1-authz']);
    expect(authorization).toMatchObject({ status: 'valid', expiresAt: expires });
    expect(
      await repository.findValidAuthorizations('acct-1', [{ type: 'dns', value: 'www.example.com' }]),
    ).toHaveLength(1);
  });

  test('a challenge of an expired authorization does not start', async () => {
    await order('order-1', 1000);
    clock.advance(1000);
    expect(await repository.startChallenge('order-1-http', new Date(clock.now().getTime() + 60_000))).toBe(
      false,
    );
  });

  test('finalize begins once', async () => {
    await order();
    const results = await Promise.all(Array.from({ length: 5 }, () => repository.beginFinalize('order-1')));
    expect(results.filter(Boolean)).toHaveLength(1);
    await repository.finishOrder('order-1', {
      status: 'valid',
      certificateSerial: '01ab',
      certificateChain: 'pem',
    });
    expect(await repository.findOrderByCertificate('01ab')).toMatchObject({ id: 'order-1', status: 'valid' });
  });

  test('stale processing challenges are claimed once and leased again', async () => {
    await order();
    await repository.startChallenge('order-1-http', new Date(clock.now().getTime() + 1000));
    expect(await repository.claimStaleChallenges(new Date(clock.now().getTime() + 60_000), 10)).toEqual([]);
    clock.advance(1000);
    const lease = new Date(clock.now().getTime() + 60_000);
    expect(await repository.claimStaleChallenges(lease, 10)).toEqual(['order-1-http']);
    expect(await repository.claimStaleChallenges(lease, 10)).toEqual([]);
  });

  test('expire writes what time decided and drops used-up nonces', async () => {
    await order('order-1', 1000);
    await repository.addNonces([{ nonce: 'n1', expiresAt: new Date(clock.now().getTime() + 500) }]);
    clock.advance(1000);
    expect(await repository.expire()).toEqual({ orders: 1, authorizations: 1, nonces: 1 });
    expect((await repository.findOrder('order-1'))?.status).toBe('invalid');
    expect(await repository.expire()).toEqual({ orders: 0, authorizations: 0, nonces: 0 });
  });
});
