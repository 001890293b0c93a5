/**
 * A small client for Signet's API, used by the CLI commands that go through a running server
 * (`signet apikey`, `issue`, `revoke`: DESIGN.md "CLI and a running server"). Errors carry the
 * server's problem document, so a command can print its code and detail.
 */

export const DEFAULT_API_URL = 'http://127.0.0.1:8080';

export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  code?: string;
  requestId?: string;
  violations?: { code: string; message: string }[];
  errors?: { path: string; message: string }[];
}

export class ApiClientError extends Error {
  override readonly name = 'ApiClientError';
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly problem: Problem | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface ApiClientOptions {
  url?: string;
  apiKey?: string;
  /** Per request, milliseconds. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export interface ApiResponse<T> {
  status: number;
  headers: Headers;
  body: T;
}

export function createApiClient({
  url = DEFAULT_API_URL,
  apiKey,
  timeoutMs = 30_000,
  fetch: doFetch = fetch,
}: ApiClientOptions = {}) {
  let base: URL;
  try {
    base = new URL(url);
  } catch {
    throw new ApiClientError(`not a URL: ${url}`, undefined, undefined);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:')
    throw new ApiClientError(`not an http(s) URL: ${url}`, undefined, undefined);

  async function request<T = unknown>(
    method: string,
    path: string,
    {
      json,
      body,
      headers = {},
    }: { json?: unknown; body?: string | Uint8Array; headers?: Record<string, string> } = {},
  ): Promise<ApiResponse<T>> {
    const target = new URL(path.replace(/^\//, ''), base.href.endsWith('/') ? base.href : `${base.href}/`);
    const allHeaders: Record<string, string> = { accept: 'application/json', ...headers };
    if (apiKey) allHeaders.authorization = `Bearer ${apiKey}`;
    let payload: string | Uint8Array | undefined = body;
    if (json !== undefined) {
      payload = JSON.stringify(json);
      allHeaders['content-type'] = 'application/json';
    }
    let response: Response;
    try {
      response = await doFetch(target, {
        method,
        headers: allHeaders,
        ...(payload !== undefined ? { body: payload } : {}),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      const reason = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name;
      throw new ApiClientError(
        `cannot reach the Signet server at ${base.origin} (${reason}); is 'signet serve' running?`,
        undefined,
        undefined,
        {
          cause: error,
        },
      );
    }
    const type = response.headers.get('content-type') ?? '';
    if (!response.ok) {
      let problem: Problem | undefined;
      if (type.includes('json'))
        problem = (await response.json().catch(() => undefined)) as Problem | undefined;
      throw new ApiClientError(describeProblem(response, problem), response.status, problem);
    }
    let parsed: unknown;
    if (response.status === 204) parsed = undefined;
    else if (type.includes('json')) parsed = await response.json();
    else if (type.startsWith('text/') || type.includes('pem') || type.includes('yaml'))
      parsed = await response.text();
    else parsed = new Uint8Array(await response.arrayBuffer());
    return { status: response.status, headers: response.headers, body: parsed as T };
  }

  return { request, url: base.origin };
}

export type ApiClient = ReturnType<typeof createApiClient>;

/**
 * A refusal in a few lines: status, code and detail, then each field the server named (`errors`,
 * a schema failure) and each rule broken (`violations`, a policy refusal), which say exactly what
 * was wrong (issue #33).
 */
function describeProblem(response: Response, problem: Problem | undefined): string {
  const detail = problem?.detail ?? response.statusText;
  const code = problem?.code ? ` [${problem.code}]` : '';
  const lines = [`${response.status}${code}: ${detail}`];
  for (const error of Array.isArray(problem?.errors) ? problem.errors : [])
    lines.push(`  ${error.path || '(body)'}: ${error.message}`);
  for (const violation of Array.isArray(problem?.violations) ? problem.violations : [])
    lines.push(`  ${violation.code}: ${violation.message}`);
  return lines.join('\n');
}
