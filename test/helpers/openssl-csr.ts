import { execFileSync } from 'node:child_process';

/**
 * A new private key (P-256 unless `algorithm` says otherwise) written to `keyFile`, and its
 * PKCS#10 request made by `openssl req`, as a client of the CA makes one. `sans` are openssl's
 * subjectAltName entries (`DNS:host`, `IP:address`).
 */
export function newKeyAndCsr(options: {
  keyFile: string;
  subject: string;
  sans: string[];
  algorithm?: string[];
  format?: 'DER' | 'PEM';
}): Buffer {
  const algorithm = options.algorithm ?? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  return execFileSync(
    'openssl',
    [
      'req',
      '-new',
      ...algorithm,
      '-nodes',
      '-keyout',
      options.keyFile,
      '-subj',
      options.subject,
      ...(options.sans.length > 0 ? ['-addext', `subjectAltName=${options.sans.join(',')}`] : []),
      '-outform',
      options.format ?? 'DER',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
}
