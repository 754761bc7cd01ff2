import type { SchedulerKey } from './index.ts';

/** A diffusers `scheduler_config.json` as parsed JSON. */
export type SchedulerConfigJson = Readonly<Record<string, unknown>>;

const NON_FINITE: Record<string, number> = { Infinity: Infinity, '-Infinity': -Infinity, NaN: NaN };

/**
 * A scheduler's configuration as diffusers' `SchedulerClass.from_config(modelConfig, **overrides)` resolves
 * it: the class's defaults, then the model's keys, then the overrides. Keys the class does not take are kept
 * (diffusers keeps them in `config` too, and a few code paths look them up by presence); keys starting with
 * `_` (`_class_name`, `_diffusers_version`) are metadata and dropped.
 *
 * `Key` is the class's keys (those of its defaults): reading any other key does not compile, and code shared by
 * several classes states the keys it reads, so it only accepts the config of a class that has them all. Keys only
 * some classes take are asked about by name among every class's keys (`accepts`, `flag`, `optionalNumber`).
 */
export class SchedulerConfig<Key extends string = SchedulerKey> {
  private readonly values: Map<string, unknown>;

  constructor(
    readonly className: string,
    private readonly defaults: Readonly<Record<Key, unknown>>,
    modelConfig: SchedulerConfigJson = {},
    overrides: Readonly<Record<string, unknown>> = {},
  ) {
    this.values = new Map(Object.entries(defaults));
    for (const source of [modelConfig, overrides]) {
      for (const [key, value] of Object.entries(source)) {
        if (!key.startsWith('_')) this.values.set(key, value);
      }
    }
  }

  /** Whether the scheduler class takes this key as a constructor argument. */
  accepts(key: SchedulerKey): boolean {
    return Object.hasOwn(this.defaults, key);
  }

  /** A key only some classes take: its value where this class takes it (and it is set), false elsewhere. */
  flag(key: SchedulerKey): boolean {
    return this.accepts(key) && this.boolean(key as string as Key);
  }

  /** A number only some configs carry (diffusers' `hasattr` and then the value): null where absent or unset. */
  optionalNumber(key: SchedulerKey): number | null {
    return this.values.has(key) ? this.numberOrNull(key as string as Key) : null;
  }

  /** The resolved configuration, for logs and tests. */
  toJSON(): Record<string, unknown> {
    return Object.fromEntries(this.values);
  }

  /** The value as given, for keys whose spelling diffusers remaps before validating. */
  raw(key: Key): unknown {
    return this.values.get(key);
  }

  number(key: Key): number {
    const value = this.values.get(key);
    const parsed = typeof value === 'string' && value in NON_FINITE ? NON_FINITE[value] : value;
    if (typeof parsed !== 'number') throw this.invalid(key, 'a number', value);
    return parsed;
  }

  integer(key: Key, min = 0): number {
    const value = this.number(key);
    if (!Number.isInteger(value) || value < min) throw this.invalid(key, `an integer >= ${min}`, value);
    return value;
  }

  numberOrNull(key: Key): number | null {
    const value = this.values.get(key);
    return value === null || value === undefined ? null : this.number(key);
  }

  boolean(key: Key): boolean {
    const value = this.values.get(key);
    if (value === null || value === undefined) return false;
    if (typeof value !== 'boolean') throw this.invalid(key, 'true or false', value);
    return value;
  }

  choice<T extends string>(key: Key, options: readonly T[]): T {
    const value = this.values.get(key);
    if (typeof value !== 'string' || !options.includes(value as T)) {
      throw this.invalid(key, `one of ${options.map((o) => `"${o}"`).join(', ')}`, value);
    }
    return value as T;
  }

  numberListOrNull(key: Key): number[] | null {
    const value = this.values.get(key);
    if (value === null || value === undefined) return null;
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      throw this.invalid(key, 'a list of numbers', value);
    }
    return value as number[];
  }

  integerList(key: Key): number[] {
    const value = this.values.get(key) ?? [];
    if (!Array.isArray(value) || !value.every((v) => Number.isInteger(v))) {
      throw this.invalid(key, 'a list of integers', value);
    }
    return value as number[];
  }

  /** For options diffusers has but this port leaves out: fails unless the key is absent or keeps its harmless value. */
  requireUnset(key: string, reason: string): void {
    const value = this.values.get(key);
    if (value !== undefined && value !== null && value !== false) {
      throw new Error(`${this.className}: "${key}" is not supported (${reason})`);
    }
  }

  private invalid(key: Key, expected: string, value: unknown): Error {
    return new Error(`${this.className} config "${key}" must be ${expected}, got ${JSON.stringify(value)}`);
  }
}

const BETA_SCHEDULES = ['linear', 'scaled_linear', 'squaredcos_cap_v2'] as const;
export type BetaSchedule = (typeof BETA_SCHEDULES)[number] | 'exp';

const PREDICTION_TYPES = ['epsilon', 'v_prediction', 'sample'] as const;
export type PredictionType = (typeof PREDICTION_TYPES)[number];

/**
 * `torch.linspace(start, end, steps, dtype=float32)` as PyTorch's CPU kernel computes it: the ends are
 * rounded to float32, the first half counts up from `start`, the second half down from `end`.
 */
export function torchLinspaceFloat32(start: number, end: number, steps: number): Float32Array {
  const from = Math.fround(start);
  const to = Math.fround(end);
  const out = new Float32Array(steps);
  if (steps === 1) {
    out[0] = from;
    return out;
  }
  const step = (to - from) / (steps - 1);
  const halfway = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) out[i] = i < halfway ? from + step * i : to - step * (steps - i - 1);
  return out;
}

/** diffusers' `betas_for_alpha_bar`: betas that discretise a continuous ᾱ(t), capped at 0.999. */
function betasForAlphaBar(count: number, transform: 'cosine' | 'exp'): Float32Array {
  const alphaBar =
    transform === 'cosine'
      ? (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2
      : (t: number) => Math.exp(t * -12.0);
  const betas = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    betas[i] = Math.min(1 - alphaBar((i + 1) / count) / alphaBar(i / count), 0.999);
  }
  return betas;
}

/** `torch.cumprod(1 - betas)` on float32; PyTorch's CPU kernel accumulates in double. */
function cumulativeAlphas(betas: Float32Array): Float32Array {
  const out = new Float32Array(betas.length);
  let product = 1;
  for (let i = 0; i < betas.length; i++) {
    product *= Math.fround(1 - betas[i]);
    out[i] = product;
  }
  return out;
}

/** diffusers' `rescale_zero_terminal_snr` (Lin et al. 2023, Algorithm 1), in float32 like torch. */
function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const f = Math.fround;
  const sqrtBar = cumulativeAlphas(betas).map((a) => Math.sqrt(a));
  const first = sqrtBar[0];
  const last = sqrtBar[sqrtBar.length - 1];
  const scale = f(first / f(first - last));
  const bar = sqrtBar.map((v) => {
    const shifted = f(f(v - last) * scale);
    return f(shifted * shifted);
  });
  return bar.map((v, i) => f(1 - (i === 0 ? v : f(v / bar[i - 1]))));
}

export interface TrainingScheduleOptions {
  /** Beta schedules the class accepts beyond linear/scaled_linear/squaredcos_cap_v2 (Heun also takes "exp"). */
  extraSchedules?: readonly BetaSchedule[];
  /**
   * Whether the class replaces a zero terminal ᾱ with 2^-24 after `rescale_betas_zero_snr` (the Euler family,
   * DPM-Solver and UniPC do, so that the first sigma is finite; DDIM and LCM keep the zero).
   */
  floorTerminalAlpha?: boolean;
}

/** The training noise schedule ᾱ_t (`alphas_cumprod`, float32) from num_train_timesteps and the beta keys. */
/** The keys of the training noise schedule, which every scheduler class takes. */
type TrainingKey = 'num_train_timesteps' | 'trained_betas' | 'beta_schedule' | 'beta_start' | 'beta_end';

export function trainingAlphasCumprod(config: SchedulerConfig<TrainingKey>, options: TrainingScheduleOptions = {}): Float32Array {
  const count = config.integer('num_train_timesteps', 1);
  const trained = config.numberListOrNull('trained_betas');
  let betas: Float32Array;
  if (trained) {
    if (trained.length !== count) {
      throw new Error(`${config.className}: trained_betas has ${trained.length} values but num_train_timesteps is ${count}`);
    }
    betas = Float32Array.from(trained);
  } else {
    const schedule = config.choice<BetaSchedule>('beta_schedule', [...BETA_SCHEDULES, ...(options.extraSchedules ?? [])]);
    const start = config.number('beta_start');
    const end = config.number('beta_end');
    if (schedule === 'linear') betas = torchLinspaceFloat32(start, end, count);
    else if (schedule === 'scaled_linear') betas = torchLinspaceFloat32(start ** 0.5, end ** 0.5, count).map((b) => b * b);
    else betas = betasForAlphaBar(count, schedule === 'exp' ? 'exp' : 'cosine');
  }
  const rescale = config.flag('rescale_betas_zero_snr');
  if (rescale) betas = rescaleZeroTerminalSnr(betas);
  const alphasCumprod = cumulativeAlphas(betas);
  if (rescale && options.floorTerminalAlpha) alphasCumprod[alphasCumprod.length - 1] = 2 ** -24;
  return alphasCumprod;
}

export function predictionType(config: SchedulerConfig<'prediction_type'>, supported: readonly PredictionType[] = PREDICTION_TYPES): PredictionType {
  return config.choice('prediction_type', supported);
}
