import type { SchedulerConfig } from './config.ts';

/** "Common Diffusion Noise Schedules and Sample Steps are Flawed", Table 2. */
const TIMESTEP_SPACINGS = ['linspace', 'leading', 'trailing'] as const;
export type TimestepSpacing = (typeof TIMESTEP_SPACINGS)[number];

/** numpy's `round` (half to even). */
export function roundHalfEven(x: number): number {
  const rounded = Math.round(x);
  return Math.abs(x % 1) === 0.5 && rounded % 2 !== 0 ? rounded - 1 : rounded;
}

/** `numpy.linspace(start, stop, num, endpoint)` in float64, element for element. */
export function linspace(start: number, stop: number, num: number, endpoint = true): number[] {
  if (num === 1) return [start];
  const step = (stop - start) / (endpoint ? num - 1 : num);
  const out = Array.from({ length: num }, (_, i) => i * step + start);
  if (endpoint) out[num - 1] = stop;
  return out;
}

/** `numpy.arange(start, stop, step)` for floats: numpy fills `start + i * (x1 - start)` with x1 = start + step. */
export function arange(start: number, stop: number, step: number): number[] {
  const length = Math.max(0, Math.ceil((stop - start) / step));
  const delta = start + step - start;
  return Array.from({ length }, (_, i) => (i === 0 ? start : i === 1 ? start + step : start + i * delta));
}

export function validateStepCount(steps: number, max: number): void {
  if (!Number.isInteger(steps) || steps < 1 || steps > max) {
    throw new RangeError(`number of inference steps must be an integer in 1..${max}, got ${steps}`);
  }
}

export function timestepSpacing(config: SchedulerConfig): TimestepSpacing {
  return config.choice('timestep_spacing', TIMESTEP_SPACINGS);
}

/**
 * The N descending timesteps of DDIM, PNDM and the Euler family, spaced by the config's `timestep_spacing`.
 * `linspace` values are left unrounded when `roundLinspace` is false (the Euler family keeps fractional
 * timesteps); leading/trailing are integers.
 */
export function spacedTimesteps(config: SchedulerConfig, trainSteps: number, steps: number, roundLinspace: boolean): number[] {
  validateStepCount(steps, trainSteps);
  const spacing = timestepSpacing(config);
  const stepsOffset = config.integer('steps_offset');
  switch (spacing) {
    case 'linspace': {
      const points = linspace(0, trainSteps - 1, steps);
      return (roundLinspace ? points.map(roundHalfEven) : points).reverse();
    }
    case 'leading': {
      const ratio = Math.floor(trainSteps / steps);
      return Array.from({ length: steps }, (_, i) => (steps - 1 - i) * ratio + stepsOffset);
    }
    case 'trailing':
      return arange(trainSteps, 0, -trainSteps / steps).map((t) => roundHalfEven(t) - 1);
  }
}

/**
 * The N descending integer timesteps of DPM-Solver and UniPC: N+1 points are spaced and the last (t = 0)
 * dropped. `lastTimestep` is num_train_timesteps, or less where DPM-Solver clips lambda.
 */
export function multistepTimesteps(config: SchedulerConfig, lastTimestep: number, trainSteps: number, steps: number): number[] {
  validateStepCount(steps, trainSteps);
  const spacing = timestepSpacing(config);
  const stepsOffset = config.integer('steps_offset');
  switch (spacing) {
    case 'linspace':
      return linspace(0, lastTimestep - 1, steps + 1).map(roundHalfEven).reverse().slice(0, steps);
    case 'leading': {
      const ratio = Math.floor(lastTimestep / (steps + 1));
      return Array.from({ length: steps }, (_, i) => (steps - i) * ratio + stepsOffset);
    }
    case 'trailing':
      return arange(lastTimestep, 0, -trainSteps / steps).map((t) => roundHalfEven(t) - 1);
  }
}

/**
 * The step index a multistep scheduler starts from when first called with `timestep`: diffusers takes the
 * second match when a timestep repeats (so img2img starting mid-schedule does not skip a sigma).
 * `missing` says what diffusers does when the timestep is not in the schedule.
 */
export function indexForTimestep(timesteps: readonly number[], timestep: number, missing: 'last' | 'error'): number {
  const first = timesteps.indexOf(timestep);
  if (first < 0) {
    if (missing === 'last') return timesteps.length - 1;
    throw new Error(`timestep ${timestep} is not one of this scheduler's timesteps; call setTimesteps and pass its values`);
  }
  const second = timesteps.indexOf(timestep, first + 1);
  return second >= 0 ? second : first;
}
