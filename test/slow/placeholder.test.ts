import { describe, expect, it } from 'vitest';
import { hasTool } from '../helpers/tools.ts';

// The slow suites (fault, fuzz, multi-node) land here; until then this checks the CI contract
// that a tool missing under CI=true fails rather than skips.
describe('the slow suite', () => {
  it('finds openssl, which CI installs', () => {
    expect(hasTool('openssl', ['version'])).toBe(true);
  });
});
