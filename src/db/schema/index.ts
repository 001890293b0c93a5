/** The one schema of Signet's database; drizzle-kit generates migrations/ from it. */
export * from './acme.table.ts';
export * from './api-keys.table.ts';
export * from './audit.table.ts';
export * from './certificates.table.ts';
export * from './crls.table.ts';
export * from './idempotency.table.ts';
export * from './issuers.table.ts';
export * from './ocsp-responders.table.ts';
export * from './ocsp-responses.table.ts';
export * from './owed-work.table.ts';
export * from './rate-limits.table.ts';
export * from './replay-guard.table.ts';
