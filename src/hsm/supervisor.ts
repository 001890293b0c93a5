import { type PartitionProcess, type StartPartitionOptions, startPartitionProcess } from './process.ts';

/**
 * Keeps a spawned partition process running (issue #22): when it dies, whatever the cause, the
 * death is reported with its exit code or signal and the process is started again, after a delay
 * that doubles with each death in quick succession (up to `maxDelayMs`) and falls back to
 * `initialDelayMs` once a process has lived `stableAfterMs`. A restarted partition comes up
 * sealed; the CA's client unseals it when it holds the secret (runtime's onConnect), else the
 * partition waits for custodians and the node stays not ready.
 */
export interface SupervisorEvents {
  /** The process ended on its own (`how`: 'exit code N' or 'signal SIGKILL'). */
  died(event: { how: string; pid: number | undefined; uptimeMs: number; restartInMs: number }): void;
  /** A new process serves the socket. */
  restarted(event: { pid: number | undefined; attempt: number }): void;
  /** A start attempt failed; another follows after `retryInMs`. */
  startFailed(event: { error: Error; attempt: number; retryInMs: number }): void;
}

export interface SupervisorOptions extends StartPartitionOptions {
  events: SupervisorEvents;
  /** Default 250 ms. */
  initialDelayMs?: number;
  /** Default 10 s. */
  maxDelayMs?: number;
  /** Default 30 s. */
  stableAfterMs?: number;
}

export class PartitionSupervisor {
  private current: PartitionProcess | undefined;
  private stopping = false;
  private delayMs: number;
  private timer: NodeJS.Timeout | undefined;
  private starting: Promise<void> | undefined;
  private startedAt = 0;
  /** How many times the process was started again after a death. */
  restarts = 0;

  private constructor(private readonly options: SupervisorOptions) {
    this.delayMs = options.initialDelayMs ?? 250;
  }

  /** Starts the first process; fails as startPartitionProcess does (the node does not start without it). */
  static async start(options: SupervisorOptions): Promise<PartitionSupervisor> {
    const supervisor = new PartitionSupervisor(options);
    supervisor.watch(await startPartitionProcess(options));
    return supervisor;
  }

  get pid(): number | undefined {
    return this.current?.child.pid;
  }

  private watch(process: PartitionProcess): void {
    this.current = process;
    this.startedAt = Date.now();
    void process.exited.then((code) => {
      if (this.stopping || this.current !== process) return;
      this.current = undefined;
      const uptimeMs = Date.now() - this.startedAt;
      if (uptimeMs >= (this.options.stableAfterMs ?? 30_000))
        this.delayMs = this.options.initialDelayMs ?? 250;
      const how = typeof code === 'number' ? `exit code ${code}` : `signal ${code}`;
      this.options.events.died({ how, pid: process.child.pid, uptimeMs, restartInMs: this.delayMs });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.stopping) return;
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.options.maxDelayMs ?? 10_000);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.starting = this.restart();
    }, delay);
  }

  private async restart(): Promise<void> {
    if (this.stopping) return;
    const attempt = this.restarts + 1;
    try {
      const process = await startPartitionProcess(this.options);
      if (this.stopping) {
        await process.stop();
        return;
      }
      this.restarts = attempt;
      this.watch(process);
      this.options.events.restarted({ pid: process.child.pid, attempt });
    } catch (error) {
      this.options.events.startFailed({ error: error as Error, attempt, retryInMs: this.delayMs });
      this.schedule();
    } finally {
      this.starting = undefined;
    }
  }

  /** Stops supervising and stops the process (SIGTERM, then SIGKILL after 5 s). */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    await this.starting;
    await this.current?.stop();
  }
}
