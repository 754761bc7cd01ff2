import { predictionType, type PredictionType, SchedulerConfig, trainingAlphasCumprod } from './config.ts';
import { dataPrediction, MULTISTEP_SOLVER_DEFAULTS, noisePrediction, noiseToSigma, timestepsForSigmas } from './multistep.ts';
import type { Scheduler, StepOptions, StepResult } from './scheduler.ts';
import { assertSameLength, drawNoise, dynamicThreshold, requireGenerator } from './sample-ops.ts';
import {
  alphaSigma,
  exponentialSigmas,
  finalSigma,
  interpolateSigmas,
  karrasSigmas,
  lambdaOf,
  logFloat32,
  rejectUnsupportedSigmas,
  sigmaRange,
  trainingSigmas,
} from './sigmas.ts';
import { indexForTimestep, linspace, multistepTimesteps } from './timesteps.ts';

/** `DPMSolverMultistepScheduler.__init__` defaults (diffusers 0.35). */
export const DPM_SOLVER_MULTISTEP_DEFAULTS = {
  ...MULTISTEP_SOLVER_DEFAULTS,
  algorithm_type: 'dpmsolver++',
  solver_type: 'midpoint',
  euler_at_final: false,
  use_lu_lambdas: false,
  lambda_min_clipped: -Infinity,
  variance_type: null,
} as const;

const ALGORITHMS = ['dpmsolver++', 'sde-dpmsolver++', 'dpmsolver', 'sde-dpmsolver'] as const;
type Algorithm = (typeof ALGORITHMS)[number];

/**
 * DPM-Solver (Lu et al. 2022) and DPM-Solver++ (Lu et al. 2022b) multistep, as diffusers'
 * `DPMSolverMultistepScheduler`. With algorithm_type "dpmsolver++" and solver_order 2 this is AUTOMATIC1111's
 * "DPM++ 2M" (and "DPM++ 2M Karras" with use_karras_sigmas). The "sde-" variants draw one noise tensor per step.
 */
export class DPMSolverMultistepScheduler implements Scheduler {
  readonly integerTimesteps = true;
  readonly initNoiseSigma = 1;
  readonly order = 1;
  readonly alphasCumprod: Float32Array;
  timesteps: number[] = [];
  /** One per timestep plus the final sigma (float32). */
  sigmas = new Float32Array(0);
  private readonly prediction: PredictionType;
  private readonly algorithm: Algorithm;
  private readonly solverType: 'midpoint' | 'heun';
  private readonly solverOrder: number;
  /** Converted model outputs (x0 for the ++ variants, noise otherwise), newest last. */
  private modelOutputs: Float32Array[] = [];
  private lowerOrderCount = 0;
  private stepIndex: number | null = null;
  private beginIndex: number | null = null;

  constructor(readonly config: SchedulerConfig) {
    rejectUnsupportedSigmas(config);
    config.requireUnset('use_dynamic_shifting', 'it only applies to flow-matching models');
    config.requireUnset('variance_type', 'models that predict their variance are not supported');
    this.prediction = predictionType(config);
    this.solverOrder = config.integer('solver_order', 1);
    // diffusers maps the algorithm and solver names of its sibling schedulers onto its own.
    const algorithm = config.raw('algorithm_type') === 'deis' ? 'dpmsolver++' : config.choice('algorithm_type', ALGORITHMS);
    const rawSolver = config.raw('solver_type');
    this.solverType = ['logrho', 'bh1', 'bh2'].includes(rawSolver as string) ? 'midpoint' : config.choice('solver_type', ['midpoint', 'heun'] as const);
    this.algorithm = algorithm;
    if (algorithm === 'sde-dpmsolver' && this.solverOrder > 2) {
      throw new Error('DPMSolverMultistepScheduler: solver_order 3 is not available for algorithm_type "sde-dpmsolver"');
    }
    if (!algorithm.endsWith('++') && config.choice('final_sigmas_type', ['zero', 'sigma_min'] as const) === 'zero') {
      throw new Error(`DPMSolverMultistepScheduler: final_sigmas_type "zero" is not supported for algorithm_type "${algorithm}"; use "sigma_min"`);
    }
    this.alphasCumprod = trainingAlphasCumprod(config, { floorTerminalAlpha: true });
  }

  setTimesteps(steps: number): void {
    const config = this.config;
    const trainSteps = this.alphasCumprod.length;
    let timesteps = multistepTimesteps(config, this.lastTimestep(), trainSteps, steps);
    const training = trainingSigmas(this.alphasCumprod);
    const logSigmas = logFloat32(training);
    const descending = Float32Array.from(training).reverse();
    const roundTimesteps = config.raw('beta_schedule') !== 'squaredcos_cap_v2';

    let sigmas: number[];
    if (config.boolean('use_karras_sigmas')) {
      const range = sigmaRange(config, descending);
      sigmas = karrasSigmas(range.min, range.max, steps);
      timesteps = timestepsForSigmas(sigmas, logSigmas, roundTimesteps);
    } else if (config.boolean('use_lu_lambdas')) {
      const lambdas = linspace(0, 1, steps).map((ramp) => logSigmas[trainSteps - 1] + ramp * (logSigmas[0] - logSigmas[trainSteps - 1]));
      sigmas = lambdas.map(Math.exp);
      timesteps = timestepsForSigmas(sigmas, logSigmas, roundTimesteps);
    } else if (config.boolean('use_exponential_sigmas')) {
      const range = sigmaRange(config, descending);
      sigmas = exponentialSigmas(range.min, range.max, steps);
      timesteps = timestepsForSigmas(sigmas, logSigmas, false);
    } else {
      sigmas = interpolateSigmas(timesteps, training);
    }
    this.sigmas = Float32Array.from([...sigmas, finalSigma(config, this.alphasCumprod)]);
    this.timesteps = timesteps;
    this.modelOutputs = [];
    this.lowerOrderCount = 0;
    this.stepIndex = null;
    this.beginIndex = null;
  }

  setBeginIndex(index: number): void {
    this.beginIndex = index;
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    const index = this.stepIndex ?? this.beginIndex ?? indexForTimestep(this.timesteps, timestep, 'last');
    return noiseToSigma(original, noise, this.sigmas[index]);
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, options?: StepOptions): StepResult {
    assertSameLength(modelOutput, sample);
    if (this.timesteps.length === 0) throw new Error('DPMSolverMultistepScheduler.step called before setTimesteps');
    this.stepIndex ??= this.beginIndex ?? indexForTimestep(this.timesteps, timestep, 'last');
    const index = this.stepIndex;
    const count = this.timesteps.length;
    const lowerOrderFinal =
      index === count - 1 &&
      (this.config.boolean('euler_at_final') ||
        (this.config.boolean('lower_order_final') && count < 15) ||
        this.config.raw('final_sigmas_type') === 'zero');
    const lowerOrderSecond = index === count - 2 && this.config.boolean('lower_order_final') && count < 15;

    const converted = this.convertModelOutput(modelOutput, sample, this.sigmas[index]);
    this.modelOutputs = [...this.modelOutputs, converted].slice(-this.solverOrder);
    const noise = this.algorithm.startsWith('sde-') ? drawNoise(requireGenerator(options, 'DPMSolverMultistepScheduler'), sample) : null;

    let prevSample: Float32Array;
    if (this.solverOrder === 1 || this.lowerOrderCount < 1 || lowerOrderFinal) {
      prevSample = this.firstOrderUpdate(converted, sample, noise, index);
    } else if (this.solverOrder === 2 || this.lowerOrderCount < 2 || lowerOrderSecond) {
      prevSample = this.secondOrderUpdate(sample, noise, index);
    } else {
      prevSample = this.thirdOrderUpdate(sample, noise, index);
    }
    if (this.lowerOrderCount < this.solverOrder) this.lowerOrderCount += 1;
    this.stepIndex = index + 1;
    // The ++ algorithms integrate the model's x0 prediction: previews show it.
    return this.algorithm.endsWith('++') ? { prevSample, predOriginalSample: converted } : { prevSample };
  }

  /** diffusers clips lambda(t) from below (`lambda_min_clipped`), which can shorten the schedule's top. */
  private lastTimestep(): number {
    const lambdaMin = this.config.number('lambda_min_clipped');
    const trainSteps = this.alphasCumprod.length;
    let clipped = 0;
    for (let t = trainSteps - 1; t >= 0; t--) {
      const alpha = this.alphasCumprod[t];
      const lambda = Math.fround(Math.log(Math.fround(Math.sqrt(alpha))) - Math.log(Math.fround(Math.sqrt(Math.fround(1 - alpha)))));
      if (lambda < lambdaMin) clipped += 1;
    }
    return trainSteps - clipped;
  }

  /** The model output as the quantity the algorithm integrates: x0 for DPM-Solver++, noise for DPM-Solver. */
  private convertModelOutput(modelOutput: Float32Array, sample: Float32Array, sigma: number): Float32Array {
    if (this.algorithm.endsWith('++')) {
      const x0 = dataPrediction(this.prediction, modelOutput, sample, sigma);
      return this.config.boolean('thresholding') ? dynamicThreshold(this.config, x0) : x0;
    }
    const epsilon = noisePrediction(this.prediction, modelOutput, sample, sigma);
    if (!this.config.boolean('thresholding')) return epsilon;
    // Thresholding applies to x0: go from the noise to x0 and back.
    const x0 = dynamicThreshold(this.config, dataPrediction('epsilon', epsilon, sample, sigma));
    return noisePrediction('sample', x0, sample, sigma);
  }

  /** One DPM-Solver step of order 1 (DDIM in the ++ form). */
  private firstOrderUpdate(m0: Float32Array, sample: Float32Array, noise: Float32Array | null, index: number): Float32Array {
    const to = alphaSigma(this.sigmas[index + 1]);
    const from = alphaSigma(this.sigmas[index]);
    const h = lambdaOf(this.sigmas[index + 1]) - lambdaOf(this.sigmas[index]);
    switch (this.algorithm) {
      case 'dpmsolver++': {
        const a = to.sigma / from.sigma;
        const b = to.alpha * (Math.exp(-h) - 1);
        return sample.map((x, i) => a * x - b * m0[i]);
      }
      case 'dpmsolver': {
        const a = to.alpha / from.alpha;
        const b = to.sigma * (Math.exp(h) - 1);
        return sample.map((x, i) => a * x - b * m0[i]);
      }
      case 'sde-dpmsolver++': {
        const a = (to.sigma / from.sigma) * Math.exp(-h);
        const b = to.alpha * (1 - Math.exp(-2 * h));
        const c = to.sigma * Math.sqrt(1 - Math.exp(-2 * h));
        return sample.map((x, i) => a * x + b * m0[i] + c * (noise as Float32Array)[i]);
      }
      case 'sde-dpmsolver': {
        const a = to.alpha / from.alpha;
        const b = 2 * to.sigma * (Math.exp(h) - 1);
        const c = to.sigma * Math.sqrt(Math.exp(2 * h) - 1);
        return sample.map((x, i) => a * x - b * m0[i] + c * (noise as Float32Array)[i]);
      }
    }
  }

  /** Multistep order 2 from the last two converted outputs. */
  private secondOrderUpdate(sample: Float32Array, noise: Float32Array | null, index: number): Float32Array {
    const [m1, m0] = this.modelOutputs.slice(-2);
    const to = alphaSigma(this.sigmas[index + 1]);
    const from = alphaSigma(this.sigmas[index]);
    const lambdaT = lambdaOf(this.sigmas[index + 1]);
    const lambdaS0 = lambdaOf(this.sigmas[index]);
    const lambdaS1 = lambdaOf(this.sigmas[index - 1]);
    const h = lambdaT - lambdaS0;
    const r0 = (lambdaS0 - lambdaS1) / h;
    const d1 = m0.map((v, i) => (1 / r0) * (v - m1[i]));
    const midpoint = this.solverType === 'midpoint';
    const eps = noise as Float32Array;
    switch (this.algorithm) {
      case 'dpmsolver++': {
        const a = to.sigma / from.sigma;
        const b = to.alpha * (Math.exp(-h) - 1);
        const c = midpoint ? -0.5 * b : to.alpha * ((Math.exp(-h) - 1) / h + 1);
        return sample.map((x, i) => a * x - b * m0[i] + c * d1[i]);
      }
      case 'dpmsolver': {
        const a = to.alpha / from.alpha;
        const b = to.sigma * (Math.exp(h) - 1);
        const c = midpoint ? 0.5 * b : to.sigma * ((Math.exp(h) - 1) / h - 1);
        return sample.map((x, i) => a * x - b * m0[i] - c * d1[i]);
      }
      case 'sde-dpmsolver++': {
        const a = (to.sigma / from.sigma) * Math.exp(-h);
        const b = to.alpha * (1 - Math.exp(-2 * h));
        const c = midpoint ? 0.5 * b : to.alpha * ((1 - Math.exp(-2 * h)) / (-2 * h) + 1);
        const n = to.sigma * Math.sqrt(1 - Math.exp(-2 * h));
        return sample.map((x, i) => a * x + b * m0[i] + c * d1[i] + n * eps[i]);
      }
      case 'sde-dpmsolver': {
        const a = to.alpha / from.alpha;
        const b = 2 * to.sigma * (Math.exp(h) - 1);
        const c = midpoint ? to.sigma * (Math.exp(h) - 1) : 2 * to.sigma * ((Math.exp(h) - 1) / h - 1);
        const n = to.sigma * Math.sqrt(Math.exp(2 * h) - 1);
        return sample.map((x, i) => a * x - b * m0[i] - c * d1[i] + n * eps[i]);
      }
    }
  }

  /** Multistep order 3 (not available for "sde-dpmsolver", as in diffusers). */
  private thirdOrderUpdate(sample: Float32Array, noise: Float32Array | null, index: number): Float32Array {
    const [m2, m1, m0] = this.modelOutputs.slice(-3);
    const to = alphaSigma(this.sigmas[index + 1]);
    const from = alphaSigma(this.sigmas[index]);
    const [lambdaT, lambdaS0, lambdaS1, lambdaS2] = [index + 1, index, index - 1, index - 2].map((i) => lambdaOf(this.sigmas[i]));
    const h = lambdaT - lambdaS0;
    const r0 = (lambdaS0 - lambdaS1) / h;
    const r1 = (lambdaS1 - lambdaS2) / h;
    const d10 = m0.map((v, i) => (1 / r0) * (v - m1[i]));
    const d11 = m1.map((v, i) => (1 / r1) * (v - m2[i]));
    const d1 = d10.map((v, i) => v + (r0 / (r0 + r1)) * (v - d11[i]));
    const d2 = d10.map((v, i) => (1 / (r0 + r1)) * (v - d11[i]));
    if (this.algorithm === 'dpmsolver++') {
      const a = to.sigma / from.sigma;
      const b = to.alpha * (Math.exp(-h) - 1);
      const c = to.alpha * ((Math.exp(-h) - 1) / h + 1);
      const d = to.alpha * ((Math.exp(-h) - 1 + h) / h ** 2 - 0.5);
      return sample.map((x, i) => a * x - b * m0[i] + c * d1[i] - d * d2[i]);
    }
    if (this.algorithm === 'dpmsolver') {
      const a = to.alpha / from.alpha;
      const b = to.sigma * (Math.exp(h) - 1);
      const c = to.sigma * ((Math.exp(h) - 1) / h - 1);
      const d = to.sigma * ((Math.exp(h) - 1 - h) / h ** 2 - 0.5);
      return sample.map((x, i) => a * x - b * m0[i] - c * d1[i] - d * d2[i]);
    }
    if (this.algorithm === 'sde-dpmsolver++') {
      const eps = noise as Float32Array;
      const a = (to.sigma / from.sigma) * Math.exp(-h);
      const b = to.alpha * (1 - Math.exp(-2 * h));
      const c = to.alpha * ((1 - Math.exp(-2 * h)) / (-2 * h) + 1);
      const d = to.alpha * ((1 - Math.exp(-2 * h) - 2 * h) / (2 * h) ** 2 - 0.5);
      const n = to.sigma * Math.sqrt(1 - Math.exp(-2 * h));
      return sample.map((x, i) => a * x + b * m0[i] + c * d1[i] + d * d2[i] + n * eps[i]);
    }
    throw new Error(`DPMSolverMultistepScheduler: solver_order 3 is not available for algorithm_type "${this.algorithm}"`);
  }
}
