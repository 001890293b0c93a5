import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { scriptedCa } from './helpers/fakes.ts';
import { buildHarness, contract, type Harness } from './helpers/harness.ts';

/**
 * Issue #19: every string a client sends that could reach the database is checked at the edge.
 * The fields come from openapi.yaml, not from a list here: every JSON request body's string
 * leaves (enums included), every query and path parameter of every operation, so an endpoint or
 * field added to the document is driven too. Each is sent holding characters PostgreSQL text
 * cannot hold (NUL; in JSON also unpaired surrogates), surrounded by arbitrary text.
 */

type Json = Record<string, unknown>;
type Step = string | number;

interface Field {
  method: string;
  path: string;
  in: 'body' | 'query' | 'path';
  /** The parameter's name, or the body path dotted as zod reports it (`sans.0.value`). */
  name: string;
  steps: Step[];
  /** The media type a query parameter is read with (the raw CSR upload reads policy and validity). */
  mediaType?: string;
  public: boolean;
}

const resolve = (node: unknown): Json => {
  let current = node as Json;
  while (current && typeof current.$ref === 'string') {
    current = current.$ref
      .replace(/^#\//, '')
      .split('/')
      .reduce<Json>((at, part) => at[part] as Json, contract.document);
  }
  return current;
};

/** The paths of every string leaf of a JSON schema. */
function stringLeaves(node: unknown, at: Step[] = [], out: Step[][] = []): Step[][] {
  const schema = resolve(node);
  if (!schema || typeof schema !== 'object') return out;
  for (const key of ['allOf', 'oneOf', 'anyOf']) {
    for (const part of (schema[key] as unknown[] | undefined) ?? []) stringLeaves(part, at, out);
  }
  if (schema.properties) {
    for (const [name, property] of Object.entries(schema.properties as Json)) {
      stringLeaves(property, [...at, name], out);
    }
  }
  if (schema.type === 'array') stringLeaves(schema.items, [...at, 0], out);
  const isString =
    schema.type === 'string' ||
    (Array.isArray(schema.enum) && schema.enum.every((value) => typeof value === 'string'));
  if (isString && at.length > 0 && !out.some((seen) => seen.join('.') === at.join('.'))) out.push(at);
  return out;
}

function documentedFields(): Field[] {
  const fields: Field[] = [];
  for (const [path, item] of Object.entries(contract.paths)) {
    for (const method of ['get', 'post', 'put', 'patch', 'delete']) {
      const operation = item[method] as Json | undefined;
      if (!operation) continue;
      const isPublic = Array.isArray(operation.security) && operation.security.length === 0;
      const base = { method: method.toUpperCase(), path, public: isPublic };
      const content = (resolve(operation.requestBody)?.content ?? {}) as Json;
      const rawType = Object.keys(content).find((type) => !/json$/.test(type));
      const json = content['application/json'] as Json | undefined;
      for (const steps of json ? stringLeaves(json.schema) : []) {
        fields.push({ ...base, in: 'body', name: steps.join('.'), steps });
      }
      const parameters = [
        ...((item.parameters as unknown[] | undefined) ?? []),
        ...((operation.parameters as unknown[] | undefined) ?? []),
      ].map(resolve);
      for (const parameter of parameters) {
        if (parameter.in !== 'query' && parameter.in !== 'path') continue;
        if (stringLeaves({ properties: { p: parameter.schema } }).length === 0) continue;
        const name = parameter.name as string;
        fields.push({
          ...base,
          in: parameter.in,
          name,
          steps: [name],
          ...(parameter.in === 'query' && rawType ? { mediaType: rawType } : {}),
        });
      }
    }
  }
  return fields;
}

/** A valid-looking value for each path parameter that is not the one under test. */
function pathValue(path: string, name: string): string {
  if (name === 'serial') return '01';
  if (name === 'id') return path.startsWith('/v1/apikeys') ? '0123456789abcdef' : 'dev-intermediate';
  if (name === 'issuerId') return 'dev-intermediate';
  if (name === 'shard') return '0';
  if (name === 'name') return 'web-server';
  return 'MA';
}

/** Percent-encodes every UTF-8 octet, so NUL and any other character reach the server as sent. */
const percentEncode = (text: string) =>
  [...Buffer.from(text, 'utf8')].map((octet) => `%${octet.toString(16).padStart(2, '0')}`).join('');

function withValue(steps: Step[], value: string): unknown {
  const [first, ...rest] = steps;
  const inner = rest.length === 0 ? value : withValue(rest, value);
  if (typeof first === 'number') return [inner];
  return { [first as string]: inner };
}

const text = fc.string({ unit: 'binary', maxLength: 12 });
/** JSON can carry NUL and unpaired surrogates. */
const jsonHostile = fc
  .tuple(text, fc.constantFrom('\u0000', '\ud800', '\udfff', '\u0000\u0000', '\udc00\ud800'), text)
  .map((parts) => parts.join(''));
/** A URL carries UTF-8 only: a surrogate cannot be percent-encoded, NUL can. */
const urlHostile = fc.tuple(text, text).map(([before, after]) => `${before}\u0000${after}`);

const fields = documentedFields();
let database: TestDatabase;
let h: Harness;

beforeAll(async () => {
  database = await createTestDatabase('pglite');
  // Refusals of the public revocation by key count against the caller's address: lift the limit.
  h = await buildHarness({
    database,
    ca: scriptedCa(),
    revocation: true,
    options: { failedAuthPerMinute: 1_000_000 },
  });
});
afterAll(async () => {
  await database?.destroy();
});

describe('every documented string field refuses characters it cannot hold', () => {
  it('finds the fields in openapi.yaml (the walk itself works)', () => {
    const names = fields.map((field) => `${field.method} ${field.path} ${field.in}:${field.name}`);
    expect(names).toEqual(
      expect.arrayContaining([
        'POST /v1/apikeys body:description',
        'POST /v1/apikeys body:policies.0',
        'POST /v1/certificates body:sans.0.value',
        'POST /v1/certificates query:policy',
        'GET /v1/audit query:actor',
        'GET /v1/audit query:target',
        'GET /v1/certificates query:issuer',
        'POST /v1/certificates/{serial}/revoke body:invalidityDate',
        'POST /v1/revocations/by-key body:jws',
        'GET /v1/issuers/{id} path:id',
      ]),
    );
    expect(fields.length).toBeGreaterThan(40);
  });

  it.each(fields.filter((field) => field.in === 'body'))(
    '$method $path: body field $name answers 400 request.invalid naming it',
    async (field) => {
      await fc.assert(
        fc.asyncProperty(jsonHostile, async (value) => {
          const url = field.path.replace(/\{(\w+)\}/g, (_, name: string) => pathValue(field.path, name));
          const { response, body } = await h.call(field.method, url, {
            ...(field.public ? {} : { key: h.keys.admin }),
            body: withValue(field.steps, value),
          });
          expect(response.status).toBe(400);
          expect(body.code).toBe('request.invalid');
          expect(body.errors.map((error: { path: string }) => error.path)).toContain(field.name);
        }),
        { numRuns: 15 },
      );
    },
  );

  it.each(fields.filter((field) => field.in === 'query'))(
    '$method $path: query parameter $name answers 400 request.invalid naming it',
    async (field) => {
      await fc.assert(
        fc.asyncProperty(urlHostile, async (value) => {
          const path = field.path.replace(/\{(\w+)\}/g, (_, name: string) => pathValue(field.path, name));
          const { response, body } = await h.call(
            field.method,
            `${path}?${field.name}=${percentEncode(value)}`,
            {
              ...(field.public ? {} : { key: h.keys.admin }),
              ...(field.mediaType ? { raw: 'MIIB', headers: { 'content-type': field.mediaType } } : {}),
            },
          );
          expect(response.status).toBe(400);
          expect(body.code).toBe('request.invalid');
          expect(body.errors.map((error: { path: string }) => error.path)).toContain(field.name);
        }),
        { numRuns: 15 },
      );
    },
  );

  it.each(fields.filter((field) => field.in === 'path'))(
    '$method $path: path parameter $name answers a 4xx (or an OCSP error), never a 5xx',
    async (field) => {
      await fc.assert(
        fc.asyncProperty(urlHostile, async (value) => {
          const url = field.path.replace(/\{(\w+)\}/g, (_, name: string) =>
            name === field.name ? percentEncode(value) : pathValue(field.path, name),
          );
          const { response } = await h.call(field.method, url, {
            ...(field.public ? {} : { key: h.keys.admin }),
            ...(field.method === 'POST' ? { body: { csr: 'MIIB', reason: 'superseded' } } : {}),
          });
          expect(response.status).toBeLessThan(500);
          if (!field.path.startsWith('/ocsp/')) expect(response.status).toBeGreaterThanOrEqual(400);
        }),
        { numRuns: 15 },
      );
    },
  );
});
