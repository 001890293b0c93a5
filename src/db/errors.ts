/**
 * Errors of the storage layer that callers handle by type. Each has a stable dotted `code`; the
 * HTTP edge decides the status. Everything else surfaces as a plain Error with `{ cause }`.
 */

export class StorageError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The embedded database folder is held by another process (or by this one, opened twice). */
export class DatabaseLockedError extends StorageError {
  constructor(
    readonly lockPath: string,
    readonly pid: number | undefined,
    readonly hostname: string | undefined,
    detail: string,
  ) {
    super('db.locked', `the database is in use: ${detail} (lock file ${lockPath})`);
  }
}

/** The serial is already taken (by any issuer): build a new TBS with a new serial. */
export class SerialCollisionError extends StorageError {
  constructor(readonly serial: string) {
    super('db.serial_collision', `serial ${serial} is already reserved`);
  }
}

export class CertificateNotFoundError extends StorageError {
  constructor(readonly serial: string) {
    super('certificate.not_found', `no certificate with serial ${serial}`);
  }
}

/** The certificate is not in a state that allows the operation (e.g. storing a second DER). */
export class CertificateStateError extends StorageError {
  constructor(
    readonly serial: string,
    message: string,
  ) {
    super('certificate.invalid_state', message);
  }
}

export class IssuerNotFoundError extends StorageError {
  constructor(readonly issuerId: string) {
    super('issuer.not_found', `no issuer with id ${issuerId}`);
  }
}

export class IssuerExistsError extends StorageError {
  constructor(readonly issuerId: string) {
    super('issuer.exists', `an issuer with id ${issuerId} already exists`);
  }
}

export class ApiKeyExistsError extends StorageError {
  constructor(readonly keyId: string) {
    super('apikey.exists', `an API key with id ${keyId} already exists`);
  }
}

/** A list cursor that this code did not hand out (or that was altered). */
export class InvalidCursorError extends StorageError {
  constructor() {
    super('request.cursor_invalid', 'the cursor is not one this server handed out');
  }
}

/** Postgres SQLSTATE 23505 (unique_violation); drizzle wraps driver errors, the code sits on `cause`. */
export function isUniqueViolation(error: unknown): boolean {
  return sqlState(error) === '23505';
}

/** The SQLSTATE of a driver error, looked up on the error and its causes. */
export function sqlState(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Fields of driver errors (pg, PGlite) that may quote the values of a statement. */
const VALUE_FIELDS = new Set(['params', 'parameters', 'detail', 'where', 'internalQuery']);

/**
 * The error as a log line may show it (issue #19): the statement's text and the error, never
 * the statement's parameters, which hold secrets (an API key's hash, a CSR) and user data.
 * drizzle's DrizzleQueryError writes its parameters into `params`, its message and its stack;
 * driver errors may quote values in `detail` (`Key (id)=(...) already exists`), `where` and, for
 * data exceptions (SQLSTATE class 22), in the message itself. Causes are redacted the same way.
 * Anything that is not an error comes back as it is.
 */
export function redactDatabaseError(error: unknown, depth = 0): unknown {
  if (!(error instanceof Error) || depth > 8) return error;
  const source = error as Error & Record<string, unknown>;
  const copy = Object.create(Object.getPrototypeOf(error)) as Error & Record<string, unknown>;
  for (const key of Object.keys(source)) {
    if (!VALUE_FIELDS.has(key) && key !== 'cause') copy[key] = source[key];
  }
  let message = error.message;
  // drizzle's DrizzleQueryError: "Failed query: <text>\nparams: <values>".
  if (typeof source.query === 'string' && message.startsWith('Failed query: '))
    message = `Failed query: ${source.query}`;
  else if (sqlState(error)?.startsWith('22')) message = message.replace(/"[^"]*"/g, '"[redacted]"');
  Object.defineProperty(copy, 'message', { value: message, enumerable: false, writable: true });
  const stack = typeof error.stack === 'string' ? error.stack : '';
  const frames = stack.indexOf('\n    at ');
  Object.defineProperty(copy, 'stack', {
    value: `${error.name}: ${message}${frames >= 0 ? stack.slice(frames) : ''}`,
    enumerable: false,
    writable: true,
  });
  if ('cause' in error && error.cause !== undefined) {
    Object.defineProperty(copy, 'cause', {
      value: redactDatabaseError(error.cause, depth + 1),
      enumerable: false,
      writable: true,
    });
  }
  if (Array.isArray(source.errors)) copy.errors = source.errors.map((e) => redactDatabaseError(e, depth + 1));
  // A log shows only the outer error's fields: bring up what identifies the driver's error.
  const state = sqlState(error);
  if (state && depth === 0) {
    copy.sqlState = state;
    for (const field of ['constraint', 'table', 'column'] as const) {
      const value = causeField(error, field);
      if (value !== undefined) copy[field] = value;
    }
  }
  return copy;
}

function causeField(error: unknown, field: string): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    const value = (current as unknown as Record<string, unknown>)[field];
    if (typeof value === 'string') return value;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}
