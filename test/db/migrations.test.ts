import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { expect, test } from 'vitest';
import { DEFAULT_MIGRATIONS_FOLDER } from '../../src/db/database.ts';

test('the committed migrations match the schema (drizzle-kit generate finds nothing to add)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'signet-migrations-'));
  try {
    const out = join(dir, 'migrations');
    cpSync(DEFAULT_MIGRATIONS_FOLDER, out, { recursive: true });
    const config = join(dir, 'drizzle.config.ts');
    writeFileSync(
      config,
      `export default ${JSON.stringify({
        dialect: 'postgresql',
        schema: resolve('src/db/schema/index.ts'),
        // drizzle-kit prefixes `./` to `out`: give it a path relative to the working directory.
        out: relative(process.cwd(), out),
        strict: true,
      })};\n`,
    );
    const before = readdirSync(out).sort();
    const output = execFileSync(
      process.execPath,
      ['node_modules/drizzle-kit/bin.cjs', 'generate', '--config', config],
      {
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
    expect(readdirSync(out).sort()).toEqual(before);
    expect(output).toContain('No schema changes');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
