import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { ErrorCategory } from '../lib/errors.ts';

/** RFC 9457 problem details; `type` is https://signet.dev/problems/<code> (DESIGN.md "Errors"). */
export const PROBLEM_BASE = 'https://signet.dev/problems/';
export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export const STATUS_BY_CATEGORY: Record<ErrorCategory, ContentfulStatusCode> = {
  invalid: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  unprocessable: 422,
  too_large: 413,
  rate_limited: 429,
  unavailable: 503,
  internal: 500,
};

export interface ProblemInput {
  code: string;
  status: ContentfulStatusCode;
  title: string;
  detail: string;
  extra?: Record<string, unknown>;
  headers?: Record<string, string>;
}

/** The RFC 9457 document itself, for the app and for the server's answers to unreadable requests. */
export function problemDocument(
  problem: Omit<ProblemInput, 'headers'>,
  requestId: string | undefined,
): Record<string, unknown> {
  return {
    type: `${PROBLEM_BASE}${problem.code}`,
    title: problem.title,
    status: problem.status,
    detail: problem.detail,
    code: problem.code,
    ...(requestId ? { requestId, instance: `urn:signet:request:${requestId}` } : {}),
    ...problem.extra,
  };
}

export function problemResponse(c: Context, problem: ProblemInput): Response {
  const body = problemDocument(problem, c.get('requestId') as string | undefined);
  return new Response(JSON.stringify(body), {
    status: problem.status,
    headers: { 'content-type': PROBLEM_CONTENT_TYPE, ...problem.headers },
  });
}

/** Short human titles per category; the detail carries the specific sentence. */
export const TITLE_BY_CATEGORY: Record<ErrorCategory, string> = {
  invalid: 'The request is invalid',
  unauthenticated: 'Authentication required',
  forbidden: 'Not allowed',
  not_found: 'Not found',
  conflict: 'Conflict',
  unprocessable: 'Unprocessable request',
  too_large: 'Request body too large',
  rate_limited: 'Too many requests',
  unavailable: 'Service unavailable',
  internal: 'Internal error',
};
