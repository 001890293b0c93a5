import { sql } from 'drizzle-orm';
import { expect, test } from 'vitest';
import { errorSerializer } from '../../src/api/logger.ts';
import { createApiKeysRepository, hashApiKeySecret } from '../../src/db/api-keys.repository.ts';
import { apiKeys } from '../../src/db/schema/index.ts';
import { AppError } from '../../src/lib/errors.ts';
import { describeEachDatabase } from '../helpers/database.ts';

// Issue #19: an error log held a new API key's secret hash, because drizzle writes a failed
// statement's parameters into its error. Each case provokes a real error of each driver and
// checks what the service logger's error serializer keeps of it.

const logged = (error: unknown) => JSON.stringify(errorSerializer(error));

async function failure(run: () => Promise<unknown>): Promise<unknown> {
  try {
    await run();
  } catch (error) {
    return error;
  }
  throw new Error('expected the statement to fail');
}

describeEachDatabase('database errors in logs', (getDatabase) => {
  test('keep the statement and the error of a refused insert, not its parameters', async () => {
    const secretSha256 = hashApiKeySecret('a secret that must not be logged');
    const keys = createApiKeysRepository({ db: getDatabase().db });
    const error = await failure(() =>
      keys.create({ id: 'k_1', secretSha256, roles: ['admin'], description: 'private\u0000note' }),
    );
    const text = logged(error);
    expect(text).toContain('Failed query: insert into \\"api_keys\\"');
    expect(text).toMatch(/invalid byte sequence for encoding/);
    expect(text).not.toContain(Buffer.from(secretSha256).toString('hex'));
    expect(text).not.toContain(Array.from(secretSha256).join(','));
    expect(text).not.toContain('private');
    expect(text).not.toMatch(/"params"|params:/);
  });

  test('drop the key values a unique violation quotes in its detail', async () => {
    const { db } = getDatabase();
    const row = {
      id: 'k-unique-value',
      secretSha256: new Uint8Array(32),
      roles: ['admin' as const],
      createdAt: new Date(),
    };
    await db.insert(apiKeys).values(row);
    const error = await failure(() => db.insert(apiKeys).values(row));
    const text = logged(error);
    expect(text).toMatch(/duplicate key value violates unique constraint/);
    expect(JSON.parse(text)).toMatchObject({ sqlState: '23505', constraint: 'api_keys_pkey' });
    expect(text).not.toContain('k-unique-value');
  });

  test('redact the value a data exception quotes in its message, also as the cause of an AppError', async () => {
    const { db } = getDatabase();
    const error = await failure(() => db.execute(sql`select ${'value-to-hide'}::integer`));
    const wrapped = new AppError('db.unavailable', 'unavailable', 'The database is unavailable.', undefined, {
      cause: error,
    });
    for (const text of [logged(error), logged(wrapped)]) {
      expect(text).toMatch(/invalid input syntax for type integer/);
      expect(text).not.toContain('value-to-hide');
    }
  });

  test('leave other errors as pino shows them', () => {
    const error = new Error('plain failure', { cause: new Error('why') });
    expect(errorSerializer(error)).toMatchObject({ type: 'Error', message: 'plain failure: why' });
  });
});
