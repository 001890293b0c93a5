/** Time is injected (STYLE.md): repositories stamp rows with this clock, tests pass a fixed one. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
