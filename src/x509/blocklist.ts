/**
 * A blocklist of public keys (compromised, debian-weak, revoked for keyCompromise), keyed by the
 * SHA-256 of the SubjectPublicKeyInfo DER as Boulder's blocked-keys table is. The file has one
 * hex hash per line; `#` starts a comment. Loading fails loudly at start (a bad line names its
 * number); a failed reload keeps the previous list and throws.
 */

import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { spkiSha256 } from './keys.ts';

export interface KeyBlocklist {
  /** Whether this SubjectPublicKeyInfo (DER) is blocked. */
  has(spki: Uint8Array): boolean;
  /** Whether this SPKI SHA-256 (hex, any case) is blocked. */
  hasHash(sha256Hex: string): boolean;
  readonly size: number;
  /** Re-reads the file and swaps the list in atomically; resolves to the new size. */
  reload(): Promise<number>;
}

const HASH = /^[0-9a-f]{64}$/;

export function parseBlocklist(text: string, source = 'blocklist'): Set<string> {
  const hashes = new Set<string>();
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.replace(/#.*$/, '').trim().toLowerCase();
    if (line === '') return;
    if (!HASH.test(line)) {
      throw new Error(`${source}:${index + 1}: not a SHA-256 hash in hex (64 hex digits)`);
    }
    hashes.add(line);
  });
  return hashes;
}

export function createKeyBlocklist(file: string): KeyBlocklist {
  let hashes = parseBlocklist(readFileSync(file, 'utf8'), file);
  return {
    has: (spki) => hashes.has(spkiSha256(spki)),
    hasHash: (hash) => hashes.has(hash.toLowerCase()),
    get size() {
      return hashes.size;
    },
    async reload() {
      hashes = parseBlocklist(await readFile(file, 'utf8'), file);
      return hashes.size;
    },
  };
}

/** An in-memory blocklist (tests, or a list kept in the database). */
export function keyBlocklistFromHashes(list: Iterable<string>): KeyBlocklist {
  const hashes = parseBlocklist([...list].join('\n'));
  return {
    has: (spki) => hashes.has(spkiSha256(spki)),
    hasHash: (hash) => hashes.has(hash.toLowerCase()),
    get size() {
      return hashes.size;
    },
    reload: async () => hashes.size,
  };
}
