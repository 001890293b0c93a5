import type { Context } from 'hono';
import type { z } from 'zod';
import type { ApiEnv } from './env.ts';
import { apiErrors, zodIssues } from './errors.ts';
import { isStorableText, UNSTORABLE_MESSAGE } from './schemas.ts';

/**
 * Small helpers shared by the routes: body and query validation with zod (every failure a 400
 * problem naming the field) and Accept negotiation.
 */

export const isJsonType = (contentType: string | undefined): boolean =>
  contentType !== undefined && /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(contentType);

export const mediaType = (contentType: string | undefined): string =>
  (contentType ?? '').split(';')[0]!.trim().toLowerCase();

/** Parses a JSON body against a zod schema. The caller has checked the content type. */
export async function readJson<S extends z.ZodType>(c: Context<ApiEnv>, schema: S): Promise<z.output<S>> {
  const bytes = new Uint8Array(await c.req.arrayBuffer());
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw apiErrors.invalidJson();
  }
  const refused = unstorable(value);
  if (refused.length > 0) throw apiErrors.invalidCharacters(refused);
  const result = schema.safeParse(value);
  if (!result.success) throw apiErrors.invalidBody(zodIssues(result.error));
  return result.data;
}

/**
 * Every string in `value` (keys included) holding a character no field can hold, by its path:
 * such input is refused as `request.invalid` whatever the schema says of the field (issue #19).
 */
function unstorable(value: unknown, path: string[] = []): { path: string; message: string }[] {
  if (typeof value === 'string') {
    return isStorableText(value) ? [] : [{ path: path.join('.'), message: UNSTORABLE_MESSAGE }];
  }
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([key, item]) => [
    ...unstorable(key, [...path, key]).map((issue) => ({ ...issue, path: [...path, key].join('.') })),
    ...unstorable(item, [...path, key]),
  ]);
}

/**
 * Parses the query string against a zod schema. Every parameter of the API takes one value: a
 * repeated one (`?policy=a&policy=b`) is refused rather than silently read as its first value.
 */
export function readQuery<S extends z.ZodType>(c: Context<ApiEnv>, schema: S): z.output<S> {
  const values: Record<string, string> = {};
  const repeated: { path: string; message: string }[] = [];
  for (const [name, given] of Object.entries(c.req.queries())) {
    if (given.length > 1) repeated.push({ path: name, message: 'given more than once; it takes one value' });
    values[name] = given[0] ?? '';
  }
  const refused = unstorable(values);
  if (refused.length > 0) throw apiErrors.invalidCharacters(refused);
  const result = schema.safeParse(values);
  const issues = [...repeated, ...(result.success ? [] : zodIssues(result.error))];
  if (issues.length > 0 || !result.success) throw apiErrors.invalidQuery(issues);
  return result.data;
}

/**
 * The offered media type the Accept header (RFC 9110 §12.5.1) prefers; the first offer when the
 * header is absent, and also when nothing offered is acceptable: answering the default is more
 * useful to a client than a 406.
 */
export function negotiate<T extends string>(
  acceptHeader: string | undefined,
  offers: readonly [T, ...T[]],
): T {
  if (!acceptHeader) return offers[0];
  const ranges = acceptHeader
    .split(',')
    .map((part, index) => {
      const [range = '', ...params] = part.trim().split(';');
      let q = 1;
      for (const param of params) {
        const [name, value] = param.trim().split('=');
        if (name?.toLowerCase() === 'q' && value !== undefined) q = Number.parseFloat(value);
      }
      return { range: range.trim().toLowerCase(), q: Number.isFinite(q) ? q : 0, index };
    })
    .filter((r) => r.range.length > 0);
  let best: { offer: T; q: number; specificity: number; index: number } | undefined;
  for (const offer of offers) {
    const [type] = offer.split('/');
    for (const { range, q, index } of ranges) {
      const specificity = range === offer ? 2 : range === `${type}/*` ? 1 : range === '*/*' ? 0 : -1;
      if (specificity < 0 || q <= 0) continue;
      const better =
        !best ||
        q > best.q ||
        (q === best.q && specificity > best.specificity) ||
        (q === best.q && specificity === best.specificity && index < best.index);
      if (better) best = { offer, q, specificity, index };
    }
  }
  return best?.offer ?? offers[0];
}

export const toPem = (label: string, der: Uint8Array): string => {
  const base64 = Buffer.from(der).toString('base64');
  return `-----BEGIN ${label}-----\n${base64.match(/.{1,64}/g)?.join('\n') ?? ''}\n-----END ${label}-----\n`;
};

export const iso = (date: Date | null | undefined): string | null => (date ? date.toISOString() : null);
