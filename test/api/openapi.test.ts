import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Validator } from '@seriousme/openapi-schema-validator';
import { describe, expect, it } from 'vitest';
import { OPENAPI_PATH } from '../../src/api/health.routes.ts';
import { POLICY_VIOLATION_CODES } from '../../src/policy/codes.ts';
import { CSR_ERROR_CODES } from '../../src/x509/csr.ts';
import { contract } from './helpers/harness.ts';

const SRC = fileURLToPath(new URL('../../src', import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') ? [path] : [];
  });
}

const documentedCodes = new Set(
  (contract.document.components as { schemas: { ProblemCode: { enum: string[] } } }).schemas.ProblemCode.enum,
);

describe('openapi.yaml', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    const result = await new Validator().validate(readFileSync(OPENAPI_PATH, 'utf8'));
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
  });

  it('documents no /acme/* path: ACME answers to RFC 8555, not to this document', () => {
    expect(Object.keys(contract.paths).filter((path) => path.startsWith('/acme'))).toEqual([]);
  });

  it('lists every policy violation code', () => {
    expect(POLICY_VIOLATION_CODES.filter((code) => !documentedCodes.has(code))).toEqual([]);
  });

  it('lists every error code that the code can send to a client', () => {
    // The edge renders AppError codes: `new AppError('code', 'category', ...)` and the `super(...)`
    // of AppError subclasses anywhere in src/ but the offline ceremony. Internal errors (500) are
    // rendered as `internal` and never show their own code.
    const found = new Set<string>(CSR_ERROR_CODES);
    for (const file of sourceFiles(SRC).filter((f) => !f.includes('/ceremony/'))) {
      const text = readFileSync(file, 'utf8');
      const patterns = [/new AppError\(\s*'([a-z][a-z0-9_.]*)',\s*'([a-z_]+)'/g];
      // revoke-by-key.ts builds its codes as `revocation.${code}` through refuse('code', ...).
      if (file.endsWith('revoke-by-key.ts')) {
        for (const [, code] of text.matchAll(/refuse\(\s*'([a-z_]+)'/g)) found.add(`revocation.${code}`);
      }
      if (text.includes('extends AppError')) patterns.push(/super\(\s*'([a-z][a-z0-9_.]*)',\s*'([a-z_]+)'/g);
      for (const pattern of patterns) {
        for (const [, code, category] of text.matchAll(pattern)) {
          if (category !== 'internal') found.add(code!);
        }
      }
    }
    expect(found.size).toBeGreaterThan(10);
    expect([...found].filter((code) => !documentedCodes.has(code)).sort()).toEqual([]);
  });
});
