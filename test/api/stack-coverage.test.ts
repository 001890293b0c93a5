import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { contract } from './helpers/harness.ts';
import { STACK_OPERATIONS } from './helpers/stack.ts';

/**
 * The API on the real service is tested by route family in test/api/stack-*.test.ts; each file
 * checks at its end that it exercised (through app.request, every response held to
 * openapi.yaml) the operations STACK_OPERATIONS lists for it. This file checks that those lists
 * together name every operation of openapi.yaml, and that each list belongs to a file that checks it.
 */
describe('the stack test files together', () => {
  it('exercise every operation of openapi.yaml', () => {
    const named = new Set(Object.values(STACK_OPERATIONS).flat());
    expect(contract.operations().filter((operation) => !named.has(operation))).toEqual([]);
  });

  it('name only operations openapi.yaml has', () => {
    const operations = new Set(contract.operations());
    expect(
      Object.values(STACK_OPERATIONS)
        .flat()
        .filter((operation) => !operations.has(operation)),
    ).toEqual([]);
  });

  it.each(Object.keys(STACK_OPERATIONS))('stack-%s.test.ts checks its list', (name) => {
    const source = readFileSync(new URL(`./stack-${name}.test.ts`, import.meta.url), 'utf8');
    expect(source).toContain(`itClosesCleanly('${name}',`);
  });
});
