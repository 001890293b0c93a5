import { AcmeError, acmeError } from '../errors.ts';
import { checkCaa } from './caa.ts';
import { validateDns01 } from './dns-01.ts';
import { validateHttp01 } from './http-01.ts';
import type { ValidationNetwork } from './network.ts';
import { validateTlsAlpn01 } from './tls-alpn-01.ts';

export type ChallengeType = 'http-01' | 'dns-01' | 'tls-alpn-01';

export interface ChallengeJob {
  type: ChallengeType;
  /** The authorisation's identifier (for a wildcard, the name below `*.`). */
  identifier: { type: 'dns' | 'ip'; value: string };
  token: string;
  keyAuthorization: string;
  /** For CAA (RFC 8659 §4.3, RFC 8657): a wildcard authorisation, and the account's URL. */
  wildcard?: boolean;
  accountUri?: string;
}

export interface ChallengeValidator {
  /** Resolves when the challenge is met; throws an AcmeError saying why it is not. */
  validate(job: ChallengeJob): Promise<void>;
}

export interface ChallengeValidatorOptions {
  network: ValidationNetwork;
  /** acme.validation.httpPort and tlsPort. */
  httpPort: number;
  tlsPort: number;
  /** The whole validation, lookups and redirects included (acme.validation.timeout). */
  timeoutMs: number;
  /** acme.caaIdentities: checked once the challenge passes (RFC 8659); empty or absent: no CAA check. */
  caaIdentities?: string[];
}

export function createChallengeValidator(options: ChallengeValidatorOptions): ChallengeValidator {
  const { network, httpPort, tlsPort, timeoutMs } = options;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0)
    throw new Error('createChallengeValidator: timeoutMs must be positive');
  return {
    async validate(job) {
      const controller = new AbortController();
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          controller.abort();
          reject(acmeError('connection', `the validation did not finish within ${timeoutMs / 1000} s`));
        }, timeoutMs);
      });
      const signal = controller.signal;
      const caaIdentities = options.caaIdentities ?? [];
      const run = async (): Promise<void> => {
        await challenge();
        // RFC 8659 §3: CAA is checked for DNS names (IP addresses have none), at validation time.
        if (caaIdentities.length > 0 && job.identifier.type === 'dns') {
          await checkCaa(network, caaIdentities, {
            name: job.identifier.value,
            wildcard: job.wildcard ?? false,
            accountUri: job.accountUri ?? '',
            method: job.type,
          });
        }
      };
      const challenge = (): Promise<void> => {
        switch (job.type) {
          case 'http-01':
            return validateHttp01({ ...job, port: httpPort, network, signal });
          case 'tls-alpn-01':
            return validateTlsAlpn01({ ...job, port: tlsPort, network, signal });
          case 'dns-01':
            return validateDns01({
              domain: job.identifier.value,
              keyAuthorization: job.keyAuthorization,
              network,
            });
        }
      };
      try {
        // DNS queries take no signal: the race bounds them too.
        await Promise.race([run(), expired]);
      } catch (error) {
        if (error instanceof AcmeError) throw error;
        throw acmeError('connection', `the validation failed: ${(error as Error).message ?? 'error'}`, {
          cause: error,
        });
      } finally {
        clearTimeout(timer);
        controller.abort();
      }
    },
  };
}
