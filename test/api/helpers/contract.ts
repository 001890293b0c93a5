import { readFileSync } from 'node:fs';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { parse as parseYaml } from 'yaml';
import { OPENAPI_PATH } from '../../../src/api/health.routes.ts';

/**
 * Holds real responses to openapi.yaml: the operation must exist, the status must be listed,
 * required headers present, the media type listed, and a JSON body valid against its schema
 * (ajv, JSON Schema 2020-12 as OpenAPI 3.1 uses). Records which operations were exercised so a
 * test can demand that every one was.
 */

type Json = Record<string, unknown>;
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;

export interface Operation {
  method: string;
  path: string;
}

export class Contract {
  readonly document: Json;
  readonly #ajv: Ajv2020;
  readonly #validators = new Map<string, ValidateFunction>();
  readonly #routes: { path: string; pattern: RegExp; literal: number }[];
  /** `METHOD path status` of every response checked. */
  readonly exercised = new Set<string>();

  constructor(file = OPENAPI_PATH) {
    this.document = parseYaml(readFileSync(file, 'utf8')) as Json;
    this.#ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(this.#ajv);
    this.#ajv.addFormat('binary', true);
    this.#ajv.addSchema(this.document, 'openapi');
    this.#routes = Object.keys(this.paths).map((path) => ({
      path,
      // `/ocsp/{request}` takes the rest of the path (RFC 6960 §A.1 base64 may contain '/').
      pattern: new RegExp(
        `^${path
          .split(/(\{[^}]+\})/)
          .map((part) =>
            part === '{request}'
              ? '.+'
              : part.startsWith('{')
                ? '[^/]+'
                : part.replace(/[.*+?^$()|[\]\\]/g, '\\$&'),
          )
          .join('')}$`,
      ),
      literal: path.replace(/\{[^}]+\}/g, '').length,
    }));
  }

  get paths(): Record<string, Record<string, Json>> {
    return this.document.paths as Record<string, Record<string, Json>>;
  }

  /** Every operation in the document as `METHOD path`. */
  operations(): string[] {
    const methods = ['get', 'put', 'post', 'delete', 'patch'];
    return Object.entries(this.paths).flatMap(([path, item]) =>
      Object.keys(item)
        .filter((key) => methods.includes(key))
        .map((method) => `${method.toUpperCase()} ${path}`),
    );
  }

  /** The document path that a concrete request path matches, most literal first. */
  match(pathname: string): string | undefined {
    const candidates = this.#routes.filter((route) => route.pattern.test(pathname));
    candidates.sort((a, b) => b.literal - a.literal);
    return candidates[0]?.path;
  }

  #resolve(value: unknown): Json {
    let current = value as Json;
    while (current && typeof current.$ref === 'string') current = this.#pointer(current.$ref);
    return current;
  }

  #pointer(ref: string): Json {
    const parts = ref
      .replace(/^#\//, '')
      .split('/')
      .map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'));
    let node: unknown = this.document;
    for (const part of parts) node = (node as Json)[part];
    if (node === undefined) throw new Error(`openapi.yaml: unresolved $ref ${ref}`);
    return node as Json;
  }

  #validator(pointer: string): ValidateFunction {
    let validate = this.#validators.get(pointer);
    if (!validate) {
      validate = this.#ajv.compile({ $ref: `openapi#${pointer}` });
      this.#validators.set(pointer, validate);
    }
    return validate;
  }

  /** A node of the document by JSON pointer (`/components/examples/Csr`), following `$ref`s. */
  node(pointer: string): Json {
    return this.#resolve(this.#pointer(`#${pointer}`));
  }

  /** Every mismatch of `value` against the schema at `pointer` (empty when it is valid). */
  validate(pointer: string, value: unknown): string[] {
    const validate = this.#validator(pointer);
    if (validate(value)) return [];
    return (validate.errors ?? []).map(
      (e) => `${e.instancePath || '(value)'} ${e.message} ${JSON.stringify(e.params)}`,
    );
  }

  /** Throws with every mismatch between the response and the document; returns the parsed body. */
  async check(method: string, url: string, response: Response): Promise<unknown> {
    const pathname = new URL(url, 'http://localhost').pathname;
    // ACME is its own protocol with RFC 8555 as its contract (README "ACME"): /acme/* is not in
    // openapi.yaml and answers ACME problem types; test/acme holds it to the RFC instead.
    if (pathname.startsWith('/acme/')) return Buffer.from(await response.clone().arrayBuffer());
    const path = this.match(pathname);
    const operation = path ? (this.paths[path]?.[method.toLowerCase()] as Json | undefined) : undefined;
    if (!path || !operation) return this.#checkUndocumented(method, pathname, response);
    const status = String(response.status);
    const responses = operation.responses as Json;
    const key = status in responses ? status : `${status[0]}XX` in responses ? `${status[0]}XX` : 'default';
    if (!(key in responses)) throw new Error(`${method} ${path}: status ${status} is not in openapi.yaml`);
    const spec = this.#resolve(responses[key]);
    const problems: string[] = [];

    for (const [name, header] of Object.entries((spec.headers ?? {}) as Json)) {
      const resolved = this.#resolve(header);
      if (resolved.required === true && !response.headers.has(name))
        problems.push(`header ${name} is required`);
    }

    const body = Buffer.from(await response.clone().arrayBuffer());
    const content = spec.content as Json | undefined;
    let parsed: unknown = body;
    if (!content) {
      if (body.length > 0) problems.push(`no body is documented but ${body.length} bytes came`);
    } else {
      const type = (response.headers.get('content-type') ?? '').split(';')[0]!.trim();
      if (!(type in content)) {
        problems.push(`content type '${type}' is not one of ${Object.keys(content).join(', ')}`);
      } else if (/json$/.test(type)) {
        parsed = JSON.parse(body.toString('utf8'));
        const pointer = this.#schemaPointer(path, method, key, type, responses[key]);
        const validate = this.#validator(pointer);
        if (!validate(parsed)) {
          problems.push(
            ...(validate.errors ?? []).map(
              (e) => `body${e.instancePath} ${e.message} ${JSON.stringify(e.params)}`,
            ),
          );
        }
      } else {
        parsed = body;
      }
    }
    if (problems.length > 0) {
      throw new Error(
        `${method} ${pathname} -> ${status} does not match openapi.yaml:\n  ${problems.join('\n  ')}`,
      );
    }
    this.exercised.add(`${method.toUpperCase()} ${path} ${status}`);
    return parsed;
  }

  /** A path or method the document does not have must answer a 404 or 405 problem. */
  async #checkUndocumented(method: string, pathname: string, response: Response): Promise<unknown> {
    const body = await response.clone().text();
    const type = response.headers.get('content-type');
    const validate = this.#validator('/components/schemas/Problem');
    const parsed = type === 'application/problem+json' ? JSON.parse(body) : undefined;
    if (![404, 405].includes(response.status) || !validate(parsed) || !response.headers.has('x-request-id')) {
      throw new Error(
        `${method} ${pathname} is not in openapi.yaml, yet answered ${response.status} ${type}: ${body.slice(0, 200)}`,
      );
    }
    return parsed;
  }

  /** The JSON pointer of a response body's schema, through a components/responses $ref if any. */
  #schemaPointer(path: string, method: string, key: string, type: string, response: unknown): string {
    const esc = (s: string) => s.replaceAll('~', '~0').replaceAll('/', '~1');
    const ref = (response as Json).$ref;
    const base =
      typeof ref === 'string'
        ? ref.replace(/^#/, '')
        : `/paths/${esc(path)}/${method.toLowerCase()}/responses/${esc(key)}`;
    return `${base}/content/${esc(type)}/schema`;
  }
}
