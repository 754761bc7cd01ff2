import { describe, expect, it } from 'vitest';
import { TorchGenerator } from '../src/random/torch-generator.ts';
import {
  createScheduler,
  resolveSchedulerName,
  SCHEDULERS,
  schedulerDisplayName,
  SUPPORTED_CLASS_NAMES,
  type NoiseSource,
  type Scheduler,
  type SchedulerConfigJson,
} from '../src/schedulers/index.ts';
import { timestepsForStrength } from '../src/pipeline/img2img.ts';
import { SchedulerConfig } from '../src/schedulers/config.ts';
import { EULER_DEFAULTS } from '../src/schedulers/euler.ts';
import { thresholdSample } from '../src/schedulers/sample-ops.ts';
import { fixturesPresent, maxAbsDiff, readF32, readFixtureJson } from './fixtures.ts';

const f = Math.fround;
const LATENT_SIZE = 4 * 8 * 8;

/** Stable Diffusion 1.5's scheduler_config.json (the fixtures' base config). */
const SD15_CONFIG: SchedulerConfigJson = {
  _class_name: 'PNDMScheduler',
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  trained_betas: null,
  steps_offset: 1,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  clip_sample: false,
};

/** The fixtures' closed-form fake U-Nets, one float32 torch op at a time (see the fixtures README). */
function fakeUnet(kind: 'A' | 'B', x: Float32Array, t: number): Float32Array {
  const tf = f(t);
  const scale = f(tf / 1000);
  return x.map((v) => {
    const wave = kind === 'A' ? Math.cos(f(v + f(tf / 100))) : Math.sin(f(v - f(tf / 200)));
    return f(f(v * scale) + f(f(0.1) * f(wave)));
  });
}

/** Hands out recorded noise tensors in order and notes at which loop step each was drawn. */
class RecordedNoise implements NoiseSource {
  readonly drawnAt: number[] = [];
  loopIndex = -1;
  private next = 0;
  constructor(private readonly tensors: Float32Array) {}
  randn(count: number): Float32Array {
    this.drawnAt.push(this.loopIndex);
    const out = this.tensors.slice(this.next, this.next + count);
    if (out.length !== count) throw new Error('ran out of recorded noise');
    this.next += count;
    return out;
  }
}

/** Counts draws and returns standard normals from a wrapped source. */
class CountingNoise implements NoiseSource {
  draws = 0;
  constructor(private readonly source: NoiseSource) {}
  randn(count: number): Float32Array {
    this.draws += 1;
    return this.source.randn(count);
  }
}

function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const scale = Math.max(Math.abs(expected[i]), 1e-30);
    worst = Math.max(worst, Math.abs(actual[i] - expected[i]) / scale);
  }
  return worst;
}

/** Properties the concrete schedulers expose beyond the interface, for the parity checks. */
function internals(scheduler: Scheduler): { alphasCumprod: Float32Array; sigmas?: Float32Array; config: { toJSON(): unknown } } {
  return scheduler as unknown as { alphasCumprod: Float32Array; sigmas?: Float32Array; config: { toJSON(): unknown } };
}

interface SchedulerCase {
  name: string;
  scheduler: string;
  base_config: Record<string, unknown>;
  overrides: Record<string, unknown>;
  resolved_config: Record<string, unknown>;
  num_inference_steps: number;
  num_model_calls: number;
  timesteps_dtype: 'int64' | 'float32';
  timesteps: number[];
  sigmas: number[] | null;
  init_noise_sigma: number;
  generator_seed: number;
  step_kwargs: Record<string, unknown>;
  guidance_scale: number | null;
  step_noise_count: number;
  step_noise_loop_index: number[];
  pred_x0_field: string | null;
}

interface LoopRecord {
  scheduler: Scheduler;
  initialLatents: Float32Array;
  modelInputs: Float32Array[];
  modelOutputs: Float32Array[];
  latents: Float32Array[];
  predX0: (Float32Array | undefined)[];
}

/** The fixtures' denoising loop (StableDiffusionPipeline's, batch 1). */
function runLoop(c: SchedulerCase, initNoise: Float32Array, generator: NoiseSource, onStep?: (i: number) => void): LoopRecord {
  const { scheduler } = createScheduler(c.scheduler, { ...c.base_config, ...c.overrides });
  scheduler.setTimesteps(c.num_inference_steps);
  let latents: Float32Array = initNoise.map((v) => v * scheduler.initNoiseSigma);
  const record: LoopRecord = { scheduler, initialLatents: latents, modelInputs: [], modelOutputs: [], latents: [], predX0: [] };
  const eta = typeof c.step_kwargs.eta === 'number' ? c.step_kwargs.eta : undefined;
  scheduler.timesteps.forEach((t, i) => {
    onStep?.(i);
    let eps: Float32Array;
    if (c.guidance_scale !== null) {
      const guidance = f(c.guidance_scale);
      const doubled = new Float32Array(2 * latents.length);
      doubled.set(latents);
      doubled.set(latents, latents.length);
      const input = scheduler.scaleModelInput(doubled, t);
      record.modelInputs.push(input);
      const uncond = fakeUnet('A', input.subarray(0, latents.length), t);
      const text = fakeUnet('B', input.subarray(latents.length), t);
      eps = uncond.map((u, k) => f(u + f(guidance * f(text[k] - u))));
    } else {
      const input = scheduler.scaleModelInput(latents, t);
      record.modelInputs.push(input);
      eps = fakeUnet('A', input, t);
    }
    record.modelOutputs.push(eps);
    const result = scheduler.step(eps, t, latents, { generator, eta });
    latents = result.prevSample;
    record.latents.push(latents);
    record.predX0.push(result.predOriginalSample);
  });
  return record;
}

function expectPerStep(actual: Float32Array[], file: Float32Array, label: string): void {
  const stride = file.length / actual.length;
  actual.forEach((values, i) => {
    const error = maxAbsDiff(values, file.subarray(i * stride, (i + 1) * stride));
    if (error > 1e-4) throw new Error(`${label}[${i}] differs by ${error}`);
  });
}

function expectLoopMatches(c: SchedulerCase, record: LoopRecord): void {
  const dir = ['schedulers', c.name];
  expectPerStep(record.modelInputs, readF32(...dir, 'model_inputs.f32'), 'model_inputs');
  expectPerStep(record.modelOutputs, readF32(...dir, 'model_outputs.f32'), 'model_outputs');
  expectPerStep(record.latents, readF32(...dir, 'latents.f32'), 'latents');
  if (c.pred_x0_field) {
    expectPerStep(record.predX0 as Float32Array[], readF32(...dir, 'pred_x0.f32'), 'pred_x0');
  }
  expect(maxAbsDiff(record.latents[record.latents.length - 1], readF32(...dir, 'final_latents.f32'))).toBeLessThanOrEqual(1e-4);
}

const fixtureCases: SchedulerCase[] = fixturesPresent
  ? readFixtureJson<{ cases: string[] }>('schedulers', 'index.json').cases.map((name) =>
      readFixtureJson<SchedulerCase>('schedulers', name, 'case.json'),
    )
  : [];

describe.runIf(fixturesPresent)('scheduler parity with diffusers 0.35 fixtures', () => {
  describe.each(fixtureCases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    it('resolves the config as from_config does', () => {
      const { scheduler } = createScheduler(c.scheduler, { ...c.base_config, ...c.overrides });
      expect(internals(scheduler).config.toJSON()).toEqual(c.resolved_config);
    });

    it('builds the same timesteps, sigmas, alphas_cumprod and init_noise_sigma', () => {
      const { scheduler } = createScheduler(c.scheduler, { ...c.base_config, ...c.overrides });
      scheduler.setTimesteps(c.num_inference_steps);
      expect(scheduler.integerTimesteps).toBe(c.timesteps_dtype === 'int64');
      expect(scheduler.timesteps.length).toBe(c.num_model_calls);
      const timesteps = c.timesteps_dtype === 'float32' ? scheduler.timesteps.map(f) : scheduler.timesteps;
      expect(timesteps).toEqual(c.timesteps);
      expect(relativeError(internals(scheduler).alphasCumprod, readF32('schedulers', c.name, 'alphas_cumprod.f32'))).toBeLessThanOrEqual(1e-6);
      if (c.sigmas) expect(relativeError(internals(scheduler).sigmas as Float32Array, c.sigmas)).toBeLessThanOrEqual(1e-6);
      expect(relativeError([scheduler.initNoiseSigma], [c.init_noise_sigma])).toBeLessThanOrEqual(1e-6);
    });

    it('reproduces every step of the denoising loop (recorded noise)', () => {
      const noises = c.step_noise_count > 0 ? readF32('schedulers', c.name, 'step_noises.f32') : new Float32Array(0);
      const generator = new RecordedNoise(noises);
      const record = runLoop(c, readF32('schedulers', c.name, 'init_noise.f32'), generator, (i) => (generator.loopIndex = i));
      expect(maxAbsDiff(record.initialLatents, readF32('schedulers', c.name, 'initial_latents.f32'))).toBeLessThanOrEqual(1e-4);
      expect(generator.drawnAt).toEqual(c.step_noise_loop_index);
      expectLoopMatches(c, record);
    });

    if (c.step_noise_count > 0) {
      it('reproduces the loop with the seeded torch-compatible generator', () => {
        const generator = new TorchGenerator(c.generator_seed);
        const initNoise = generator.randn(LATENT_SIZE);
        expect(maxAbsDiff(initNoise, readF32('schedulers', c.name, 'init_noise.f32'))).toBeLessThanOrEqual(4e-6);
        expectLoopMatches(c, runLoop(c, initNoise, generator));
      });
    }
  });
});

/** Deterministic numbers for the tests below (no fixtures needed). */
function pseudoNormals(seed: number, count: number): Float32Array {
  return new TorchGenerator(seed).randn(count);
}

/**
 * Least-squares (a, b) with input ≈ a·x0 + b·noise: the oracle below reads the noise level off its input, so its
 * answers do not depend on the scheduler's own schedule.
 */
function decompose(input: Float32Array, x0: Float32Array, noise: Float32Array): { a: number; b: number } {
  let xx = 0, nn = 0, xn = 0, xi = 0, ni = 0;
  for (let i = 0; i < input.length; i++) {
    xx += x0[i] * x0[i];
    nn += noise[i] * noise[i];
    xn += x0[i] * noise[i];
    xi += x0[i] * input[i];
    ni += noise[i] * input[i];
  }
  const det = xx * nn - xn * xn;
  return { a: (xi * nn - ni * xn) / det, b: (ni * xx - xi * xn) / det };
}

type Prediction = 'epsilon' | 'v_prediction' | 'sample';

/**
 * A perfect model for data that is a single point x0: it sees a·x0 + b·noise and answers the exact epsilon,
 * v = alpha·noise − sigma·x0, or x0. On such data every deterministic sampler follows the exact trajectory, so
 * the result must be x0 itself whatever the step count, spacing or solver order.
 */
function oracle(prediction: Prediction, x0: Float32Array, noise: Float32Array) {
  return (input: Float32Array): Float32Array => {
    const { a, b } = decompose(input, x0, noise);
    const norm = Math.hypot(a, b);
    const alpha = a / norm;
    const sigma = b / norm;
    if (prediction === 'epsilon') return Float32Array.from(noise);
    if (prediction === 'sample') return Float32Array.from(x0);
    return noise.map((n, i) => alpha * n - sigma * x0[i]);
  };
}

/**
 * The first latents on the trajectory through x0 and `noise` at the schedule's first noise level: x0 + sigma·noise
 * for the sigma-space samplers, sqrt(a)·x0 + sqrt(1-a)·noise for the others.
 */
function startOnTrajectory(scheduler: Scheduler, x0: Float32Array, noise: Float32Array): Float32Array {
  const { sigmas, alphasCumprod } = internals(scheduler);
  if (!scheduler.integerTimesteps) {
    const sigma = (sigmas as Float32Array)[0];
    return x0.map((v, i) => v + sigma * noise[i]);
  }
  const alphaBar = sigmas ? 1 / (sigmas[0] * sigmas[0] + 1) : alphasCumprod[scheduler.timesteps[0]];
  return x0.map((v, i) => Math.sqrt(alphaBar) * v + Math.sqrt(1 - alphaBar) * noise[i]);
}

function sampleWithOracle(scheduler: Scheduler, steps: number, prediction: Prediction, x0: Float32Array, noise: Float32Array): Float32Array {
  scheduler.setTimesteps(steps);
  const model = oracle(prediction, x0, noise);
  let latents = startOnTrajectory(scheduler, x0, noise);
  for (const t of scheduler.timesteps) {
    latents = scheduler.step(model(scheduler.scaleModelInput(latents, t)), t, latents).prevSample;
  }
  return latents;
}

describe('deterministic schedulers recover the data point from a perfect model', () => {
  const x0 = pseudoNormals(1, LATENT_SIZE).map((v) => v * 0.5);
  const noise = pseudoNormals(2, LATENT_SIZE);
  const allSteps = [1, 2, 7, 25];
  const setups: { name: string; overrides: Record<string, unknown>; predictions: Prediction[]; steps?: number[]; finalSigma?: number }[] = [
    { name: 'PNDM', overrides: { set_alpha_to_one: true }, predictions: ['epsilon'] },
    // PLMS combines raw v outputs from different noise levels before converting them (as diffusers does), which
    // is exact only on the first step.
    { name: 'PNDM', overrides: { set_alpha_to_one: true }, predictions: ['v_prediction'], steps: [1] },
    // The Runge–Kutta warm-up needs at least four steps (diffusers' schedule is empty below that).
    { name: 'PNDMScheduler', overrides: { set_alpha_to_one: true, skip_prk_steps: false }, predictions: ['epsilon'], steps: [4, 7, 25] },
    { name: 'DDIM', overrides: { set_alpha_to_one: true }, predictions: ['epsilon', 'v_prediction', 'sample'] },
    { name: 'Euler', overrides: {}, predictions: ['epsilon', 'v_prediction', 'sample'] },
    { name: 'Euler', overrides: { use_karras_sigmas: true, timestep_spacing: 'leading' }, predictions: ['v_prediction'] },
    { name: 'Euler Trailing', overrides: {}, predictions: ['epsilon', 'v_prediction'] },
    { name: 'LMS', overrides: {}, predictions: ['epsilon', 'v_prediction', 'sample'] },
    { name: 'LMS', overrides: { use_karras_sigmas: true }, predictions: ['v_prediction'] },
    { name: 'Heun', overrides: {}, predictions: ['epsilon', 'v_prediction', 'sample'] },
    { name: 'Heun', overrides: { use_karras_sigmas: true, timestep_spacing: 'trailing' }, predictions: ['v_prediction'] },
    { name: 'DPM++ 2M', overrides: {}, predictions: ['epsilon', 'v_prediction', 'sample'] },
    { name: 'DPM++ 2M Karras', overrides: {}, predictions: ['v_prediction'] },
    { name: 'DPMSolverMultistepScheduler', overrides: { solver_order: 3, lower_order_final: false }, predictions: ['epsilon', 'v_prediction'] },
    { name: 'DPMSolverMultistepScheduler', overrides: { solver_type: 'heun', timestep_spacing: 'leading' }, predictions: ['v_prediction'] },
    { name: 'UniPC', overrides: {}, predictions: ['epsilon', 'v_prediction', 'sample'] },
    { name: 'UniPCMultistepScheduler', overrides: { solver_order: 3, use_karras_sigmas: true }, predictions: ['v_prediction'] },
    // The noise-prediction form multiplies sigma_t = 0 by e^h = inf at a zero final sigma (NaN in diffusers too),
    // so it stops at sigma_min = sqrt(beta_0 / (1 - beta_0)) instead.
    {
      name: 'UniPCMultistepScheduler',
      overrides: { predict_x0: false, timestep_spacing: 'trailing', final_sigmas_type: 'sigma_min' },
      predictions: ['epsilon', 'v_prediction'],
      finalSigma: Math.sqrt(0.00085 / (1 - 0.00085)),
    },
  ];
  for (const setup of setups) {
    for (const prediction of setup.predictions) {
      it(`${setup.name} ${JSON.stringify(setup.overrides)} with ${prediction}`, () => {
        for (const steps of setup.steps ?? allSteps) {
          const { scheduler } = createScheduler(setup.name, { ...SD15_CONFIG, ...setup.overrides, prediction_type: prediction });
          const result = sampleWithOracle(scheduler, steps, prediction, x0, noise);
          const end = setup.finalSigma ?? 0;
          const expected = x0.map((v, i) => (v + end * noise[i]) / Math.sqrt(1 + end * end));
          expect(maxAbsDiff(result, expected), `${steps} steps`).toBeLessThanOrEqual(2e-4);
        }
      });
    }
  }
});

describe('img2img: a run begun part-way from add_noise recovers the data point from a perfect model', () => {
  const x0 = pseudoNormals(3, LATENT_SIZE).map((v) => v * 0.5);
  const noise = pseudoNormals(4, LATENT_SIZE);
  // Each family's add_noise (x0 + sigma·noise, sqrt(ᾱ)·x0 + sqrt(1−ᾱ)·noise, alpha_t·x0 + sigma_t·noise) must put
  // the latents where the schedule's begin index expects them, and every multistep solver must restart cleanly there.
  const setups: { name: string; overrides?: Record<string, unknown>; predictions: Prediction[]; strengths?: number[] }[] = [
    // diffusers' PLMS has no begin index: part-way, its second call still acts as the correction of the repeated
    // timestep and the third steps from where the schedule, not the sample, is (the img2img fixtures check that).
    { name: 'PNDM', overrides: { set_alpha_to_one: true }, predictions: ['epsilon'], strengths: [1] },
    { name: 'DDIM', overrides: { set_alpha_to_one: true }, predictions: ['epsilon', 'v_prediction'] },
    { name: 'Euler', predictions: ['epsilon', 'v_prediction'] },
    { name: 'Euler', overrides: { use_karras_sigmas: true }, predictions: ['epsilon'] },
    { name: 'Euler Trailing', predictions: ['epsilon'] },
    // diffusers' LMS begun part-way sizes its polynomial by the step index while it holds fewer derivatives, and
    // drops the missing terms: not exact even for a perfect model, so only the whole schedule is checked here.
    { name: 'LMS', predictions: ['epsilon', 'v_prediction'], strengths: [1] },
    { name: 'Heun', predictions: ['epsilon', 'v_prediction'] },
    { name: 'DPM++ 2M', predictions: ['epsilon', 'v_prediction'] },
    { name: 'DPM++ 2M Karras', predictions: ['epsilon'] },
    { name: 'DPMSolverMultistepScheduler', overrides: { solver_order: 3, lower_order_final: false }, predictions: ['epsilon'] },
    { name: 'UniPC', predictions: ['epsilon', 'v_prediction'] },
  ];
  for (const setup of setups) {
    for (const prediction of setup.predictions) {
      it(`${setup.name} ${JSON.stringify(setup.overrides ?? {})} with ${prediction}`, () => {
        for (const steps of [2, 7, 25]) {
          for (const strength of setup.strengths ?? [0.3, 0.55, 1]) {
            if (Math.floor(steps * strength) < 1) continue;
            const { scheduler } = createScheduler(setup.name, { ...SD15_CONFIG, ...setup.overrides, prediction_type: prediction });
            scheduler.setTimesteps(steps);
            const timesteps = timestepsForStrength(scheduler, steps, strength);
            const model = oracle(prediction, x0, noise);
            let latents = scheduler.addNoise(x0, noise, timesteps[0]);
            for (const t of timesteps) latents = scheduler.step(model(scheduler.scaleModelInput(latents, t)), t, latents).prevSample;
            expect(maxAbsDiff(latents, x0), `${steps} steps at strength ${strength}`).toBeLessThanOrEqual(2e-4);
          }
        }
      });
    }
  }

  it('Euler a and LCM noise the picture as their deterministic kin do, then draw on as in text-to-image', () => {
    const generator = new TorchGenerator(7n);
    const euler = createScheduler('Euler', SD15_CONFIG).scheduler;
    const ancestral = createScheduler('Euler a', SD15_CONFIG).scheduler;
    for (const scheduler of [euler, ancestral]) {
      scheduler.setTimesteps(10);
      timestepsForStrength(scheduler, 10, 0.5);
    }
    expect(ancestral.addNoise(x0, noise, ancestral.timesteps[5])).toEqual(euler.addNoise(x0, noise, euler.timesteps[5]));
    const lcm = createScheduler('LCM', SD15_CONFIG).scheduler;
    lcm.setTimesteps(4);
    const [first] = timestepsForStrength(lcm, 4, 0.5);
    const ddim = createScheduler('DDIM', SD15_CONFIG).scheduler;
    expect(lcm.addNoise(x0, noise, first)).toEqual(ddim.addNoise(x0, noise, first));
    expect(() => lcm.step(noise, first, x0, { generator })).not.toThrow();
  });

  it('refuses a strength that leaves no step, naming the fewest steps that would do', () => {
    const { scheduler } = createScheduler('Euler', SD15_CONFIG);
    scheduler.setTimesteps(3);
    expect(() => timestepsForStrength(scheduler, 3, 0.3)).toThrow('strength 0.3 of 3 steps leaves no step to run: use at least 4 steps or a higher strength');
  });
});

describe('hand-computed single steps', () => {
  const x = Float32Array.from([0.5, -1.25, 2]);
  const output = Float32Array.from([0.1, 0.3, -0.2]);

  it('Euler with v-prediction takes x0 = -sigma/sqrt(sigma^2+1)·v + x/(sigma^2+1)', () => {
    const { scheduler } = createScheduler('Euler', { ...SD15_CONFIG, prediction_type: 'v_prediction' });
    scheduler.setTimesteps(10);
    const sigma = (scheduler as unknown as { sigmas: Float32Array }).sigmas[0];
    const next = (scheduler as unknown as { sigmas: Float32Array }).sigmas[1];
    const t = scheduler.timesteps[0];
    const { prevSample, predOriginalSample } = scheduler.step(output, t, x);
    const expectedX0 = [...x].map((xi, i) => (-sigma / Math.sqrt(sigma * sigma + 1)) * output[i] + xi / (sigma * sigma + 1));
    expect(maxAbsDiff(predOriginalSample as Float32Array, expectedX0)).toBeLessThanOrEqual(1e-6);
    const expectedPrev = [...x].map((xi, i) => xi + ((xi - expectedX0[i]) / sigma) * (next - sigma));
    expect(maxAbsDiff(prevSample, expectedPrev)).toBeLessThanOrEqual(1e-5);
  });

  it.runIf(fixturesPresent)('DDIM with eta = 1 adds sigma_t·z with sigma_t^2 = (1-a_prev)/(1-a_t)·(1-a_t/a_prev)', () => {
    const alphas = readF32('schedulers', 'ddim_n20', 'alphas_cumprod.f32');
    const { scheduler } = createScheduler('DDIM', SD15_CONFIG);
    scheduler.setTimesteps(20);
    const [t, tPrev] = scheduler.timesteps;
    expect([t, tPrev]).toEqual([951, 901]);
    const z = Float32Array.from([1, -2, 0.5]);
    const counting = new CountingNoise({ randn: () => z });
    const { prevSample } = scheduler.step(output, t, x, { eta: 1, generator: counting });
    const [at, ap] = [alphas[t], alphas[tPrev]];
    const variance = ((1 - ap) / (1 - at)) * (1 - at / ap);
    const expected = [...x].map((xi, i) => {
      const x0 = (xi - Math.sqrt(1 - at) * output[i]) / Math.sqrt(at);
      return Math.sqrt(ap) * x0 + Math.sqrt(1 - ap - variance) * output[i] + Math.sqrt(variance) * z[i];
    });
    expect(maxAbsDiff(prevSample, expected)).toBeLessThanOrEqual(1e-5);
    expect(counting.draws).toBe(1);
  });
});

describe('clipping and thresholding of the predicted x0', () => {
  it('dynamic thresholding clips to the interpolated quantile of |x0| (at least 1, at most sample_max_value)', () => {
    // |x| sorted: 0.5, 1, 2, 4; the 0.5 quantile lies halfway between 1 and 2.
    expect([...thresholdSample(Float32Array.from([0.5, -2, 4, 1]), 0.5, 3)]).toEqual([0.5 / 1.5, -1, 1, 1 / 1.5].map(f));
    expect([...thresholdSample(Float32Array.from([0.5, -2, 4, 1]), 0.99, 3)]).toEqual([0.5 / 3, -2 / 3, 1, 1 / 3].map(f));
    expect([...thresholdSample(Float32Array.from([0.25, -0.5]), 0.5, 3)]).toEqual([0.25, -0.5]);
  });

  it('DDIM clips x0 to clip_sample_range when clip_sample is set (its default)', () => {
    const { scheduler } = createScheduler('DDIM', { prediction_type: 'sample', clip_sample_range: 1.5 });
    scheduler.setTimesteps(10);
    const { predOriginalSample } = scheduler.step(Float32Array.from([2, -3, 0.5]), scheduler.timesteps[0], new Float32Array(3));
    expect([...(predOriginalSample as Float32Array)]).toEqual([1.5, -1.5, 0.5]);
  });
});

describe('zero terminal SNR', () => {
  it('rescales sqrt(alphas_cumprod) to end at 0 and keep its first value; Euler floors the end at 2^-24', () => {
    const plain = internals(createScheduler('DDIM', SD15_CONFIG).scheduler).alphasCumprod;
    const rescaled = internals(createScheduler('DDIM', { ...SD15_CONFIG, rescale_betas_zero_snr: true }).scheduler).alphasCumprod;
    const [first, last] = [Math.sqrt(plain[0]), Math.sqrt(plain[999])];
    const expected = Array.from(plain, (a) => ((Math.sqrt(a) - last) * (first / (first - last))) ** 2);
    expect(maxAbsDiff(rescaled, expected)).toBeLessThanOrEqual(1e-6);
    expect(rescaled[999]).toBe(0);
    const euler = internals(createScheduler('Euler', { ...SD15_CONFIG, rescale_betas_zero_snr: true }).scheduler).alphasCumprod;
    expect(euler[999]).toBe(2 ** -24);
  });
});

describe('noise draws', () => {
  function drawsPerStep(name: string, steps: number, eta?: number): number[] {
    const { scheduler } = createScheduler(name, SD15_CONFIG);
    scheduler.setTimesteps(steps);
    const counting = new CountingNoise(new TorchGenerator(0));
    let latents = counting.randn(LATENT_SIZE);
    const draws: number[] = [];
    for (const t of scheduler.timesteps) {
      const before = counting.draws;
      const input = scheduler.scaleModelInput(latents, t);
      latents = scheduler.step(fakeUnet('A', input, t), t, latents, { generator: counting, eta }).prevSample;
      draws.push(counting.draws - before);
    }
    return draws;
  }

  it('DDIM with eta > 0 draws exactly one noise tensor per step, and none with eta = 0', () => {
    expect(drawsPerStep('DDIM', 6, 0.5)).toEqual([1, 1, 1, 1, 1, 1]);
    expect(drawsPerStep('DDIM', 6, 0)).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('Euler a draws on every step, LCM on every step but the last, the ODE solvers never', () => {
    expect(drawsPerStep('Euler a', 5)).toEqual([1, 1, 1, 1, 1]);
    expect(drawsPerStep('LCM', 4)).toEqual([1, 1, 1, 0]);
    for (const name of ['Euler', 'Euler Trailing', 'LMS', 'Heun', 'DPM++ 2M', 'DPM++ 2M Karras', 'UniPC', 'PNDM']) {
      expect(drawsPerStep(name, 5).every((n) => n === 0), name).toBe(true);
    }
  });

  it('a stochastic step without a generator is an error', () => {
    const { scheduler } = createScheduler('Euler a', SD15_CONFIG);
    scheduler.setTimesteps(2);
    const t = scheduler.timesteps[0];
    expect(() => scheduler.step(new Float32Array(4), t, new Float32Array(4))).toThrow(/needs options\.generator/);
  });
});

describe('timestep layouts', () => {
  it('Heun repeats every timestep after the first: 2N−1 model calls over the Euler timesteps', () => {
    const { scheduler: heun } = createScheduler('Heun', SD15_CONFIG);
    const { scheduler: euler } = createScheduler('Euler', SD15_CONFIG);
    heun.setTimesteps(5);
    euler.setTimesteps(5);
    const [first, ...rest] = euler.timesteps;
    expect(heun.timesteps).toEqual([first, ...rest.flatMap((t) => [t, t])]);
    expect(heun.timesteps).toHaveLength(9);
    expect(heun.integerTimesteps).toBe(false);
  });

  it('PLMS repeats its second timestep (N+1 calls); PNDM with Runge–Kutta warm-up makes N+9 calls', () => {
    const { scheduler: plms } = createScheduler('PNDM', SD15_CONFIG);
    plms.setTimesteps(10);
    expect(plms.timesteps).toEqual([901, 801, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    const { scheduler: prk } = createScheduler('PNDMScheduler', { ...SD15_CONFIG, skip_prk_steps: false });
    prk.setTimesteps(10);
    expect(prk.timesteps).toEqual([901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, 601, 501, 401, 301, 201, 101, 1]);
  });

  it('trailing spacing starts at the last training timestep (SD-Turbo)', () => {
    const { scheduler } = createScheduler('Euler Trailing', SD15_CONFIG);
    for (const [steps, expected] of [[1, [999]], [2, [999, 499]], [4, [999, 749, 499, 249]]] as const) {
      scheduler.setTimesteps(steps);
      expect(scheduler.timesteps).toEqual(expected);
    }
  });

  it('rejects step counts outside 1..num_train_timesteps', () => {
    const { scheduler } = createScheduler('Euler', SD15_CONFIG);
    expect(() => scheduler.setTimesteps(0)).toThrow(/1\.\.1000/);
    expect(() => scheduler.setTimesteps(2.5)).toThrow(/1\.\.1000/);
  });
});

describe('scheduler config keys', () => {
  it('are typed: a misspelled key does not compile (tsc checks the @ts-expect-error) where it used to read as unset', () => {
    const config = new SchedulerConfig('EulerDiscreteScheduler', EULER_DEFAULTS, { use_karras_sigmas: true });
    expect(config.boolean('use_karras_sigmas')).toBe(true);
    // @ts-expect-error — no scheduler class takes "use_karas_sigmas"
    expect(config.boolean('use_karas_sigmas')).toBe(false);
    // Keys only some classes take are asked for among every class's keys: Euler has no thresholding.
    expect(config.flag('thresholding')).toBe(false);
    // @ts-expect-error — nor "thresholdin"
    expect(config.flag('thresholdin')).toBe(false);
  });
});

describe('scheduler names and configs', () => {
  it('maps every table name (any case) to its entry and back to the same display name', () => {
    for (const entry of SCHEDULERS) {
      expect(resolveSchedulerName(entry.name.toUpperCase(), SD15_CONFIG)).toBe(entry);
      const { entry: created } = createScheduler(` ${entry.name.toLowerCase()} `, SD15_CONFIG);
      expect(created).toBe(entry);
      expect(schedulerDisplayName(entry.className, { ...SD15_CONFIG, ...entry.overrides })).toBe(entry.name);
    }
    expect(new Set(SCHEDULERS.map((e) => e.name.toLowerCase())).size).toBe(SCHEDULERS.length);
  });

  it('includes the names people know from AUTOMATIC1111', () => {
    const names = SCHEDULERS.map((e) => e.name);
    for (const name of ['Euler a', 'Euler', 'DPM++ 2M', 'DPM++ 2M Karras', 'DDIM', 'PNDM', 'LMS', 'Heun', 'UniPC', 'LCM']) {
      expect(names).toContain(name);
    }
  });

  it('resolves diffusers class names and names them by what the model config makes of them', () => {
    const karras = { ...SD15_CONFIG, _class_name: 'DPMSolverMultistepScheduler', use_karras_sigmas: true };
    const entry = resolveSchedulerName('dpmsolvermultistepscheduler', karras);
    expect(entry).toEqual({ name: 'DPM++ 2M Karras', className: 'DPMSolverMultistepScheduler', overrides: {} });
    expect(schedulerDisplayName('DPMSolverMultistepScheduler', { solver_order: 3 })).toBe('DPMSolverMultistepScheduler');
    expect(schedulerDisplayName('PNDMScheduler', SD15_CONFIG)).toBe('PNDM');
    for (const className of SUPPORTED_CLASS_NAMES) expect(resolveSchedulerName(className, SD15_CONFIG).className).toBe(className);
  });

  it("uses the model's own class and config when no name is given", () => {
    const turbo = { ...SD15_CONFIG, _class_name: 'EulerDiscreteScheduler', timestep_spacing: 'trailing' };
    const { scheduler, entry } = createScheduler(undefined, turbo);
    expect(entry.name).toBe('Euler Trailing');
    scheduler.setTimesteps(1);
    expect(scheduler.timesteps).toEqual([999]);
    expect(createScheduler(undefined, SD15_CONFIG).entry.name).toBe('PNDM');
  });

  it("carries the model's keys into another scheduler, with the name's overrides on top", () => {
    const turbo = { ...SD15_CONFIG, _class_name: 'EulerDiscreteScheduler', timestep_spacing: 'trailing' };
    const { scheduler } = createScheduler('DPM++ 2M Karras', turbo);
    expect(internals(scheduler).config.toJSON()).toMatchObject({ timestep_spacing: 'trailing', use_karras_sigmas: true, beta_schedule: 'scaled_linear' });
    const { scheduler: euler } = createScheduler('Euler', { ...SD15_CONFIG, _class_name: 'DPMSolverMultistepScheduler', solver_order: 3 });
    expect(internals(euler).config.toJSON()).toMatchObject({ solver_order: 3, timestep_spacing: 'linspace' });
  });

  it('lists the supported names when a name or class is unknown', () => {
    expect(() => resolveSchedulerName('DPM++ 3M', SD15_CONFIG)).toThrow(/Unknown scheduler "DPM\+\+ 3M".*"Euler a".*"DPM\+\+ 2M Karras".*EulerDiscreteScheduler/);
    expect(() => createScheduler(undefined, { ...SD15_CONFIG, _class_name: 'KarrasVeScheduler' })).toThrow(/Unsupported scheduler class "KarrasVeScheduler".*"Euler a"/);
    expect(() => createScheduler(undefined, { beta_schedule: 'linear' })).toThrow(/no "_class_name".*"UniPC"/);
  });

  it('names the key when a config value is invalid, and ignores keys it does not know', () => {
    expect(() => createScheduler('Euler', { ...SD15_CONFIG, beta_schedule: 'cosine' })).toThrow(/"beta_schedule" must be one of "linear", "scaled_linear", "squaredcos_cap_v2", got "cosine"/);
    expect(() => createScheduler('DDIM', { ...SD15_CONFIG, num_train_timesteps: '1000' })).toThrow(/"num_train_timesteps" must be a number/);
    const { scheduler } = createScheduler('Euler', { ...SD15_CONFIG, some_future_option: { nested: true } });
    scheduler.setTimesteps(3);
    expect(scheduler.timesteps).toHaveLength(3);
    const { scheduler: badSpacing } = createScheduler('Euler', { ...SD15_CONFIG, timestep_spacing: 'evenly' });
    expect(() => badSpacing.setTimesteps(3)).toThrow(/"timestep_spacing" must be one of "linspace", "leading", "trailing"/);
  });

  it("fills missing keys with the class's diffusers defaults", () => {
    const ddim = internals(createScheduler('DDIMScheduler', {}).scheduler).config.toJSON();
    expect(ddim).toMatchObject({ beta_schedule: 'linear', clip_sample: true, set_alpha_to_one: true, timestep_spacing: 'leading', steps_offset: 0 });
    const heun = internals(createScheduler('Heun', {}).scheduler).config.toJSON();
    expect(heun).toMatchObject({ beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'linear', timestep_spacing: 'linspace' });
  });

  it('rejects trained_betas whose length is not num_train_timesteps', () => {
    expect(() => createScheduler('DDIM', { trained_betas: [0.1, 0.2] })).toThrow(/trained_betas has 2 values but num_train_timesteps is 1000/);
  });

  it('supports trained_betas and the squaredcos_cap_v2 schedule', () => {
    const betas = Array.from({ length: 10 }, (_, i) => 0.01 * (i + 1));
    const { scheduler } = createScheduler('DDIM', { num_train_timesteps: 10, trained_betas: betas });
    let product = 1;
    const expected = betas.map((b) => (product *= 1 - b));
    expect(relativeError(internals(scheduler).alphasCumprod, expected)).toBeLessThanOrEqual(1e-6);
    const cosine = internals(createScheduler('DDIM', { beta_schedule: 'squaredcos_cap_v2' }).scheduler).alphasCumprod;
    // Nichol & Dhariwal's cosine schedule: alpha_bar(t) = cos^2(((t/T + 0.008)/1.008)·pi/2) / alpha_bar(0).
    const alphaBar = (t: number) => Math.cos(((t / 1000 + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    expect(relativeError(cosine.subarray(0, 900), Array.from({ length: 900 }, (_, t) => alphaBar(t + 1) / alphaBar(0)))).toBeLessThanOrEqual(1e-5);
  });
});
