import type { Context } from 'hono';
import type { Logger } from 'pino';

/** The four API roles of DESIGN.md "Roles"; `admin` holds every ability of the others. */
export const ROLES = ['issuer', 'revoker', 'auditor', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** An authenticated caller: an API key or (later) an mTLS client certificate. */
export interface Principal {
  /** Stable id recorded in audit events and with issued certificates (`apikey:<id>`, `mtls:<subject>`). */
  id: string;
  kind: 'apikey' | 'mtls';
  roles: Role[];
  /** Policies this credential may issue under; '*' for every policy (admin). */
  policies: string[] | '*';
}

/** Per-request values set by the middleware; every route handler may read them. */
export interface ApiVariables {
  requestId: string;
  logger: Logger;
  principal: Principal | undefined;
  /**
   * Set by the idempotency middleware for a request with an Idempotency-Key. `recoveredSerial`:
   * the first attempt died after storing this certificate; answer with it instead of issuing.
   */
  idempotency: { credentialId: string; key: string; recoveredSerial: string | null } | undefined;
}

export interface ApiEnv {
  Variables: ApiVariables;
}

/** Finds the caller of a request by other means than an API key (mTLS client certificates). */
export type PrincipalResolver = (
  c: Context<ApiEnv>,
) => Principal | undefined | Promise<Principal | undefined>;
