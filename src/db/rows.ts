/** Rows of a raw `db.execute(sql...)`: both drivers (pg and PGlite) answer `{ rows }`. */
export function rowsOf<T>(result: unknown): T[] {
  const rows = (result as { rows?: unknown }).rows;
  if (!Array.isArray(rows)) throw new Error('unexpected driver result: no rows');
  return rows as T[];
}
