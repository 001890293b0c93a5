import { AppError } from '../lib/errors.ts';

/** Something went wrong between lint and certificate: 500 at the edge, logged, nothing returned. */
export class MisissuanceError extends AppError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ca.misissuance', 'internal', message, undefined, options);
  }
}
