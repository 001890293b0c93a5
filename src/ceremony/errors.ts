import { AppError } from '../lib/errors.ts';

/**
 * One mistake in a ceremony configuration, located by its path in the YAML file
 * (`certificate-profile.not-after`), with a stable code so tests and operators can rely on it.
 */
export interface ConfigProblem {
  /** Dotted path into the YAML document; list items by index (`intermediates.0.outputs`). */
  path: string;
  /** Stable dotted code, `ceremony.config.*`. */
  code: string;
  message: string;
}

/**
 * Every failure of a ceremony that someone handles by type: refusals before anything is touched
 * (`ceremony.config_invalid` carrying every problem, `ceremony.network_up`, `ceremony.output_exists`)
 * and refusals while running (`ceremony.key_exists`, `ceremony.lint_failed`, `ceremony.signature_invalid`,
 * `ceremony.tbs_mismatch`, `ceremony.unseal_failed`, `ceremony.transcript_invalid`, ...).
 */
export class CeremonyError extends AppError {
  constructor(
    code: string,
    message: string,
    details?: Record<string, unknown>,
    options?: { cause?: unknown },
  ) {
    super(code, code === 'ceremony.config_invalid' ? 'invalid' : 'unprocessable', message, details, options);
  }
}

export function configInvalid(problems: ConfigProblem[], file?: string): CeremonyError {
  const prefix = file ? `${file}: ` : '';
  const lines = problems.map((p) => `${prefix}${p.path || '(top level)'}: ${p.message} [${p.code}]`);
  return new CeremonyError('ceremony.config_invalid', lines.join('\n'), { problems });
}

export const isConfigInvalid = (
  error: unknown,
): error is CeremonyError & { details: { problems: ConfigProblem[] } } =>
  error instanceof CeremonyError && error.code === 'ceremony.config_invalid';
