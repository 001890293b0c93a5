/**
 * Canonical JSON after RFC 8785 (JCS) for the values a transcript holds (strings, safe integers,
 * booleans, null, arrays, plain objects): members sorted by UTF-16 code units (§3.2.3), no
 * insignificant whitespace, ECMAScript string serialisation (§3.2.2.2). The transcript file is
 * exactly these bytes, so its signature can be checked by tools that know nothing of JSON.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new Error('canonical JSON here carries only safe integers');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item ?? null)).join(',')}]`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(',')}}`;
  }
  throw new Error(`canonical JSON cannot carry a ${typeof value}`);
}
