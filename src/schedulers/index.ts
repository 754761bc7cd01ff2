import { SchedulerConfig, type SchedulerConfigJson } from './config.ts';
import { DDIM_DEFAULTS, DDIMScheduler } from './ddim.ts';
import { DPM_SOLVER_MULTISTEP_DEFAULTS, DPMSolverMultistepScheduler } from './dpm-solver-multistep.ts';
import { EULER_ANCESTRAL_DEFAULTS, EulerAncestralDiscreteScheduler } from './euler-ancestral.ts';
import { EULER_DEFAULTS, EulerDiscreteScheduler } from './euler.ts';
import { HEUN_DEFAULTS, HeunDiscreteScheduler } from './heun.ts';
import { LCM_DEFAULTS, LCMScheduler } from './lcm.ts';
import { LMS_DEFAULTS, LMSDiscreteScheduler } from './lms.ts';
import { PNDM_DEFAULTS, PNDMScheduler } from './pndm.ts';
import type { Scheduler } from './scheduler.ts';
import { UNIPC_DEFAULTS, UniPCMultistepScheduler } from './unipc.ts';

export type { SchedulerConfigJson } from './config.ts';
export type { NoiseSource, Scheduler, StepOptions, StepResult } from './scheduler.ts';

/** Every config key a scheduler class of this project takes. */
export type SchedulerKey =
  | keyof typeof PNDM_DEFAULTS
  | keyof typeof DDIM_DEFAULTS
  | keyof typeof EULER_DEFAULTS
  | keyof typeof EULER_ANCESTRAL_DEFAULTS
  | keyof typeof LMS_DEFAULTS
  | keyof typeof HEUN_DEFAULTS
  | keyof typeof DPM_SOLVER_MULTISTEP_DEFAULTS
  | keyof typeof UNIPC_DEFAULTS
  | keyof typeof LCM_DEFAULTS;

interface SchedulerClass {
  defaults: Readonly<Record<string, unknown>>;
  create(config: SchedulerConfig<string>): Scheduler;
}

const CLASSES: Readonly<Record<string, SchedulerClass>> = {
  PNDMScheduler: { defaults: PNDM_DEFAULTS, create: (c) => new PNDMScheduler(c) },
  DDIMScheduler: { defaults: DDIM_DEFAULTS, create: (c) => new DDIMScheduler(c) },
  EulerDiscreteScheduler: { defaults: EULER_DEFAULTS, create: (c) => new EulerDiscreteScheduler(c) },
  EulerAncestralDiscreteScheduler: { defaults: EULER_ANCESTRAL_DEFAULTS, create: (c) => new EulerAncestralDiscreteScheduler(c) },
  LMSDiscreteScheduler: { defaults: LMS_DEFAULTS, create: (c) => new LMSDiscreteScheduler(c) },
  HeunDiscreteScheduler: { defaults: HEUN_DEFAULTS, create: (c) => new HeunDiscreteScheduler(c) },
  DPMSolverMultistepScheduler: { defaults: DPM_SOLVER_MULTISTEP_DEFAULTS, create: (c) => new DPMSolverMultistepScheduler(c) },
  UniPCMultistepScheduler: { defaults: UNIPC_DEFAULTS, create: (c) => new UniPCMultistepScheduler(c) },
  LCMScheduler: { defaults: LCM_DEFAULTS, create: (c) => new LCMScheduler(c) },
};

/** The diffusers scheduler classes this project implements. */
export const SUPPORTED_CLASS_NAMES: readonly string[] = Object.keys(CLASSES);

export interface SchedulerEntry {
  /** The name users know from AUTOMATIC1111, e.g. "Euler a". */
  name: string;
  /** The diffusers class. */
  className: string;
  /** Config keys the name implies, applied over the model's config as in `Class.from_config(config, **overrides)`. */
  overrides: Readonly<Record<string, unknown>>;
}

const DPM_PLUS_PLUS_2M = { algorithm_type: 'dpmsolver++', solver_order: 2 } as const;

export const SCHEDULERS: readonly SchedulerEntry[] = [
  { name: 'Euler', className: 'EulerDiscreteScheduler', overrides: {} },
  { name: 'Euler a', className: 'EulerAncestralDiscreteScheduler', overrides: {} },
  // SD-Turbo's 1–4 step sampler.
  { name: 'Euler Trailing', className: 'EulerDiscreteScheduler', overrides: { timestep_spacing: 'trailing' } },
  { name: 'DPM++ 2M', className: 'DPMSolverMultistepScheduler', overrides: { ...DPM_PLUS_PLUS_2M, use_karras_sigmas: false } },
  { name: 'DPM++ 2M Karras', className: 'DPMSolverMultistepScheduler', overrides: { ...DPM_PLUS_PLUS_2M, use_karras_sigmas: true } },
  { name: 'DDIM', className: 'DDIMScheduler', overrides: {} },
  { name: 'PNDM', className: 'PNDMScheduler', overrides: { skip_prk_steps: true } },
  { name: 'LMS', className: 'LMSDiscreteScheduler', overrides: {} },
  { name: 'Heun', className: 'HeunDiscreteScheduler', overrides: {} },
  { name: 'UniPC', className: 'UniPCMultistepScheduler', overrides: {} },
  { name: 'LCM', className: 'LCMScheduler', overrides: {} },
];

function supportedList(): string {
  return `${SCHEDULERS.map((e) => `"${e.name}"`).join(', ')} (or a diffusers class name: ${SUPPORTED_CLASS_NAMES.join(', ')})`;
}

function schedulerClass(className: string): SchedulerClass {
  const found = Object.hasOwn(CLASSES, className) ? CLASSES[className] : undefined;
  if (!found) {
    throw new Error(`Unsupported scheduler class "${className}". Supported: ${supportedList()}`);
  }
  return found;
}

function asModelConfig(modelConfig: SchedulerConfigJson): SchedulerConfigJson {
  if (typeof modelConfig !== 'object' || modelConfig === null || Array.isArray(modelConfig)) {
    throw new Error('scheduler_config.json must hold a JSON object');
  }
  return modelConfig;
}

/**
 * The table name for a class and config, e.g. DPMSolverMultistepScheduler with use_karras_sigmas → "DPM++ 2M
 * Karras". The entry whose overrides the resolved config matches most specifically wins; a config that no entry
 * describes (say DPM-Solver of order 3) is shown by its class name.
 */
export function schedulerDisplayName(className: string, config: SchedulerConfigJson): string {
  const resolved = new SchedulerConfig(className, schedulerClass(className).defaults, asModelConfig(config));
  const matches = SCHEDULERS.filter(
    (entry) =>
      entry.className === className &&
      Object.entries(entry.overrides).every(([key, value]) => resolved.raw(key) === value),
  );
  const best = matches.sort((a, b) => Object.keys(b.overrides).length - Object.keys(a.overrides).length)[0];
  return best?.name ?? className;
}

/** Whether a name is one of the table's or a diffusers class this project implements, ignoring case. */
export function isSchedulerName(nameOrClass: string): boolean {
  const wanted = nameOrClass.trim().toLowerCase();
  return [...SCHEDULERS.map((entry) => entry.name), ...SUPPORTED_CLASS_NAMES].some((name) => name.toLowerCase() === wanted);
}

/**
 * Finds a scheduler by table name or diffusers class name, ignoring case. A class name stands for that class
 * built from the model's config alone, and is named for what that config makes of it.
 */
export function resolveSchedulerName(nameOrClass: string, modelConfig: SchedulerConfigJson): SchedulerEntry {
  const wanted = nameOrClass.trim().toLowerCase();
  const entry = SCHEDULERS.find((e) => e.name.toLowerCase() === wanted);
  if (entry) return entry;
  const className = SUPPORTED_CLASS_NAMES.find((c) => c.toLowerCase() === wanted);
  if (className) return { name: schedulerDisplayName(className, modelConfig), className, overrides: {} };
  throw new Error(`Unknown scheduler "${nameOrClass}". Supported: ${supportedList()}`);
}

/**
 * Builds the scheduler a user asked for, as diffusers' `Class.from_config(modelConfig, **overrides)` would: the
 * model's keys (betas, prediction_type, timestep_spacing, …) carry over. Without a name, the model's own
 * `_class_name` and config are used unchanged.
 */
export function createScheduler(
  nameOrClass: string | undefined,
  modelConfig: SchedulerConfigJson,
): { scheduler: Scheduler; entry: SchedulerEntry } {
  const config = asModelConfig(modelConfig);
  let entry: SchedulerEntry;
  if (nameOrClass === undefined || nameOrClass.trim() === '') {
    const own = config._class_name;
    if (typeof own !== 'string') {
      throw new Error(`scheduler_config.json has no "_class_name"; choose a scheduler: ${supportedList()}`);
    }
    entry = { name: schedulerDisplayName(own, config), className: own, overrides: {} };
  } else {
    entry = resolveSchedulerName(nameOrClass, config);
  }
  const schedulerType = schedulerClass(entry.className);
  const scheduler = schedulerType.create(new SchedulerConfig(entry.className, schedulerType.defaults, config, entry.overrides));
  return { scheduler, entry };
}
