/**
 * The hook through which storage reports how long its operations take (the server's Prometheus
 * histogram `signet_database_duration_seconds`): repositories call it explicitly around the
 * operations worth watching, so nothing wraps their methods from outside.
 */
export type DatabaseObserver = (operation: string, seconds: number) => void;

/** Runs `work`, then tells `observe` (when there is one) how long it took, failed or not. */
export async function timed<T>(
  observe: DatabaseObserver | undefined,
  operation: string,
  work: () => Promise<T>,
): Promise<T> {
  if (!observe) return work();
  const started = performance.now();
  try {
    return await work();
  } finally {
    observe(operation, (performance.now() - started) / 1000);
  }
}
