/** PostgreSQL text cannot hold U+0000: refuse it with a clear message instead of a driver error. */
export function checkStorableText(name: string, value: unknown, maxLength = 4096): asserts value is string {
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string`);
  if (value.length > maxLength) throw new TypeError(`${name} is longer than ${maxLength} characters`);
  if (value.includes('\u0000')) throw new TypeError(`${name} contains a NUL character`);
}
