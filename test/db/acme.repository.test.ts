import { beforeEach, expect, test } from 'vitest';
import { createNonceService } from '../../src/acme/nonces.ts';
import {
  type AcmeRepository,
  createAcmeRepository,
  EabKeyUnavailableError,
} from '../../src/db/acme.repository.ts';
import { openDatabase } from '../../src/db/database.ts';
import { acmeNonces } from '../../src/db/schema/index.ts';
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
    const nonces = createNonceService({ repository, clock, lifetimeMs: 60_000, maxPerClient: 10 });
    const nonce = await nonces.issue('192.0.2.1');
    // On PostgreSQL the other node has its own connections; PGlite has one process, one handle.
    const { kind, target } = getDatabase();
    const second = kind === 'postgres' ? await openDatabase(target, { migrate: false }) : undefined;
    const other = createNonceService({
      repository: createAcmeRepository({ db: second?.db ?? getDatabase().db, clock }),
      clock,
      lifetimeMs: 60_000,
      maxPerClient: 10,
    });
    expect(await other.consume(nonce)).toBe(true);
    expect(await nonces.consume(nonce)).toBe(false);
    await second?.close();
    const late = await nonces.issue('192.0.2.1');
    clock.advance(60_000);
    expect(await nonces.consume(late)).toBe(false);
    expect(await nonces.consume('not-a-nonce')).toBe(false);
  });

  test('concurrent uses of one nonce succeed exactly once', async () => {
    const nonces = createNonceService({ repository, clock, lifetimeMs: 60_000, maxPerClient: 10 });
    const nonce = await nonces.issue('192.0.2.1');
    const results = await Promise.all(Array.from({ length: 20 }, () => nonces.consume(nonce)));
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  test('an address keeps at most maxPerClient unused nonces, its oldest forgotten first', async () => {
    const nonces = createNonceService({ repository, clock, lifetimeMs: 60_000, maxPerClient: 3 });
    const flooder: string[] = [];
    for (let i = 0; i < 8; i++) {
      flooder.push(await nonces.issue('192.0.2.1'));
      clock.advance(1);
    }
    // Issued together, in one batch: still only three kept.
    const batch = await Promise.all(Array.from({ length: 5 }, () => nonces.issue('192.0.2.1')));
    clock.advance(1);
    const bystander = await nonces.issue('2001:db8:0:1::/64');
    const rows = await getDatabase().db.select().from(acmeNonces);
    expect(rows.filter((row) => row.client === '192.0.2.1')).toHaveLength(3);
    expect(rows.filter((row) => row.client === '2001:db8:0:1::/64')).toHaveLength(1);
    // The flooder's earlier nonces are gone; another address's nonce is untouched.
    expect(await Promise.all(flooder.map((n) => nonces.consume(n)))).toEqual(flooder.map(() => false));
    expect((await Promise.all(batch.map((n) => nonces.consume(n)))).filter(Boolean)).toHaveLength(3);
    expect(await nonces.consume(bystander)).toBe(true);
  });

  test('trimNonces keeps the newest of each listed client and answers how many it deleted', async () => {
    const at = (ms: number) => new Date(clock.now().getTime() + ms);
    await repository.addNonces([
      { nonce: 'a1', expiresAt: at(1000), client: 'a' },
      { nonce: 'a2', expiresAt: at(2000), client: 'a' },
      { nonce: 'a3', expiresAt: at(3000), client: 'a' },
      { nonce: 'b1', expiresAt: at(1000), client: 'b' },
    ]);
    expect(await repository.trimNonces(['a', 'b', 'a'], 1)).toBe(2);
    expect((await getDatabase().db.select().from(acmeNonces)).map((row) => row.nonce).sort()).toEqual([
      'a3',
      'b1',
    ]);
    expect(await repository.trimNonces(['a'], 1)).toBe(0);
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
    await repository.addNonces([
      { nonce: 'n1', expiresAt: new Date(clock.now().getTime() + 500), client: '192.0.2.1' },
    ]);
    clock.advance(1000);
    expect(await repository.expire()).toEqual({ orders: 1, authorizations: 1, nonces: 1 });
    expect((await repository.findOrder('order-1'))?.status).toBe('invalid');
    expect(await repository.expire()).toEqual({ orders: 0, authorizations: 0, nonces: 0 });
  });

  const eabKey = (id: string, expiresAt: Date | null = null) =>
    repository.createEabKey({
      id,
      directory: 'dev',
      policies: ['web-server'],
      sealed: new Uint8Array([1, 2, 3]),
      createdBy: 'test',
      expiresAt,
    });

  const boundAccount = (id: string, keyId: string) =>
    repository.createAccount({
      id,
      directory: 'dev',
      keyThumbprint: `thumb-${id}`,
      keyJwk: { kty: 'EC' },
      contact: [],
      termsOfServiceAgreed: true,
      eab: { keyId, policies: ['web-server'] },
    });

  test('an EAB key binds one account: of racing registrations one wins, the rest leave nothing behind', async () => {
    await eabKey('kid-1');
    const results = await Promise.allSettled(['a1', 'a2', 'a3'].map((id) => boundAccount(id, 'kid-1')));
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const lost of results.filter((r) => r.status === 'rejected')) {
      expect((lost as PromiseRejectedResult).reason).toBeInstanceOf(EabKeyUnavailableError);
    }
    const winner = (won[0] as PromiseFulfilledResult<{ account: { id: string } }>).value.account;
    expect(await repository.findEabKey('kid-1')).toMatchObject({ accountId: winner.id });
    expect(await repository.findAccount(winner.id)).toMatchObject({
      eabKeyId: 'kid-1',
      policies: ['web-server'],
    });
    // The losers' accounts were rolled back with their attempt.
    const others = ['a1', 'a2', 'a3'].filter((id) => id !== winner.id);
    for (const id of others) expect(await repository.findAccount(id)).toBeNull();
  });

  test('an expired EAB key binds nothing', async () => {
    await eabKey('kid-old', new Date(clock.now().getTime() + 1000));
    clock.advance(1000);
    await expect(boundAccount('late', 'kid-old')).rejects.toBeInstanceOf(EabKeyUnavailableError);
    expect(await repository.findAccount('late')).toBeNull();
  });

  test('one live order replaces a certificate (RFC 9773 §5); an invalid one frees it', async () => {
    await account();
    const replacing = (id: string) =>
      repository.createOrder({
        id,
        accountId: 'acct-1',
        identifiers: [{ type: 'dns', value: 'www.example.com' }],
        expiresAt: new Date(clock.now().getTime() + 3600_000),
        authorizationIds: [],
        newAuthorizations: [],
        replaces: 'aki.serial',
      });
    await replacing('r1');
    await expect(replacing('r2')).rejects.toThrow();
    expect(await repository.findReplacingOrder('aki.serial')).toMatchObject({ id: 'r1' });
    await repository.beginFinalize('r1');
    await repository.finishOrder('r1', { status: 'invalid', error: { type: 'x', detail: 'y' } });
    expect(await repository.findReplacingOrder('aki.serial')).toBeNull();
    await replacing('r3');
  });

  test('a key change is conditional on the old key, and refused for a key another account holds', async () => {
    await account('acct-1', 'thumb-1');
    await account('acct-2', 'thumb-2');
    expect(await repository.changeAccountKey('acct-1', 'thumb-1', { thumbprint: 'thumb-2', jwk: {} })).toBe(
      'conflict',
    );
    expect(await repository.changeAccountKey('acct-1', 'thumb-x', { thumbprint: 'thumb-3', jwk: {} })).toBe(
      'stale',
    );
    expect(
      await repository.changeAccountKey('acct-1', 'thumb-1', { thumbprint: 'thumb-3', jwk: { k: 1 } }),
    ).toBe('changed');
    expect(await repository.findAccountByKey('dev', 'thumb-3')).toMatchObject({
      id: 'acct-1',
      keyJwk: { k: 1 },
    });
  });

  test('lists an account orders newest first, page by page, without invalid ones', async () => {
    await account();
    for (const id of ['o1', 'o2', 'o3', 'o4']) {
      clock.advance(1000);
      await repository.createOrder({
        id,
        accountId: 'acct-1',
        identifiers: [{ type: 'dns', value: `${id}.example.com` }],
        expiresAt: new Date(clock.now().getTime() + 3600_000),
        authorizationIds: [],
        newAuthorizations: [],
      });
    }
    await repository.beginFinalize('o2');
    await repository.finishOrder('o2', { status: 'invalid', error: { type: 'x', detail: 'y' } });
    const first = await repository.listOrders('acct-1', 2);
    expect(first.map((o) => o.id)).toEqual(['o4', 'o3']);
    const last = first.at(-1)!;
    const second = await repository.listOrders('acct-1', 2, { createdAt: last.createdAt, id: last.id });
    expect(second.map((o) => o.id)).toEqual(['o1']);
  });

  test('deactivates a pending authorization once', async () => {
    await order();
    expect(await repository.deactivateAuthorization('order-1-authz')).toBe(true);
    expect(await repository.deactivateAuthorization('order-1-authz')).toBe(false);
    expect((await repository.findAuthorizations(['order-1-authz']))[0]?.status).toBe('deactivated');
  });
});
