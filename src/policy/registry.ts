/**
 * The set of policies a running service uses. It starts only from a fully valid folder and
 * reloads atomically: a new set replaces the old one only when every file in it is valid, so a
 * bad edit leaves the old set in force and says why (SIGHUP and the admin reload call both land
 * in `reload()`).
 */

import { loadPolicies, PolicyLoadError } from './load.ts';
import type { Policy, PolicyError } from './types.ts';

export type ReloadResult = { ok: true; policies: string[] } | { ok: false; errors: PolicyError[] };

export interface PolicyRegistry {
  readonly dir: string;
  get(name: string): Policy | undefined;
  /** Every policy, by name. */
  list(): Policy[];
  /** Loads the folder again; on any error the current set stays and the errors are returned. */
  reload(): Promise<ReloadResult>;
}

/** Loads `dir`; rejects with a PolicyLoadError (every problem listed) if any file is invalid. */
export async function createPolicyRegistry({ dir }: { dir: string }): Promise<PolicyRegistry> {
  const first = await loadPolicies(dir);
  if (first.errors.length > 0) throw new PolicyLoadError(first.errors);
  let current: ReadonlyMap<string, Policy> = first.policies;
  // Reloads run one after another, so a slow early reload cannot overwrite a later one.
  let queue: Promise<unknown> = Promise.resolve();

  const reloadNow = async (): Promise<ReloadResult> => {
    const next = await loadPolicies(dir);
    if (next.errors.length > 0) return { ok: false, errors: next.errors };
    current = next.policies;
    return { ok: true, policies: [...next.policies.keys()].sort() };
  };

  return {
    dir,
    get: (name) => current.get(name),
    list: () => [...current.values()].sort((a, b) => a.name.localeCompare(b.name)),
    reload: () => {
      const result = queue.then(reloadNow, reloadNow);
      queue = result;
      return result;
    },
  };
}
