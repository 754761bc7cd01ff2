import { predictionType, type PredictionType, SchedulerConfig, trainingAlphasCumprod } from './config.ts';
import { dataPrediction, MULTISTEP_SOLVER_DEFAULTS, noisePrediction, noiseToSigma, timestepsForSigmas } from './multistep.ts';
import type { Scheduler, StepResult } from './scheduler.ts';
import { assertSameLength, dynamicThreshold } from './sample-ops.ts';
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
import { indexForTimestep, multistepTimesteps } from './timesteps.ts';

/** `UniPCMultistepScheduler.__init__` defaults (diffusers 0.35). */
export const UNIPC_DEFAULTS = {
  ...MULTISTEP_SOLVER_DEFAULTS,
  predict_x0: true,
  solver_type: 'bh2',
  disable_corrector: [],
  solver_p: null,
} as const;

/** Solves the small dense system `matrix · x = rhs` by Gaussian elimination with partial pivoting. */
function solveLinear(matrix: number[][], rhs: number[]): number[] {
  const n = rhs.length;
  const a = matrix.map((row, i) => [...row.slice(0, n), rhs[i]]);
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let row = col + 1; row < n; row++) if (Math.abs(a[row][col]) > Math.abs(a[pivot][col])) pivot = row;
    [a[col], a[pivot]] = [a[pivot], a[col]];
    for (let row = col + 1; row < n; row++) {
      const factor = a[row][col] / a[col][col];
      for (let k = col; k <= n; k++) a[row][k] -= factor * a[col][k];
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let row = n - 1; row >= 0; row--) {
    let sum = a[row][n];
    for (let k = row + 1; k < n; k++) sum -= a[row][k] * x[k];
    x[row] = sum / a[row][row];
  }
  return x;
}

/** The B(h) coefficients shared by the predictor and the corrector. */
interface UniCoefficients {
  h: number;
  /** h·phi_1(h) = e^hh − 1 with hh = −h (x0 form) or h. */
  hPhi1: number;
  bH: number;
  /** Rows r_k^(i−1) for i = 1..order, with r_order = 1. */
  vandermonde: number[][];
  rhs: number[];
  rks: number[];
}

/**
 * UniPC (Zhao et al. 2023): a unified predictor-corrector multistep solver, as diffusers'
 * `UniPCMultistepScheduler` with its default bh2 variant. The corrector (UniC) refines each new sample with the
 * model output computed at it, so every model call is used twice without extra calls.
 */
export class UniPCMultistepScheduler implements Scheduler {
  readonly integerTimesteps = true;
  readonly initNoiseSigma = 1;
  readonly order = 1;
  readonly alphasCumprod: Float32Array;
  timesteps: number[] = [];
  /** One per timestep plus the final sigma (float32). */
  sigmas = new Float32Array(0);
  private readonly prediction: PredictionType;
  private readonly predictX0: boolean;
  private readonly solverType: 'bh1' | 'bh2';
  private readonly solverOrder: number;
  private readonly disableCorrector: number[];
  /** Converted model outputs, newest last. */
  private modelOutputs: Float32Array[] = [];
  private lowerOrderCount = 0;
  private lastSample: Float32Array | null = null;
  private thisOrder = 1;
  private stepIndex: number | null = null;
  private beginIndex: number | null = null;

  constructor(readonly config: SchedulerConfig) {
    rejectUnsupportedSigmas(config);
    config.requireUnset('solver_p', 'a custom predictor scheduler cannot be given in a config file');
    config.requireUnset('use_dynamic_shifting', 'it only applies to flow-matching models');
    this.prediction = predictionType(config);
    this.predictX0 = config.boolean('predict_x0');
    const rawSolver = config.raw('solver_type');
    this.solverType = ['midpoint', 'heun', 'logrho'].includes(rawSolver as string) ? 'bh2' : config.choice('solver_type', ['bh1', 'bh2'] as const);
    this.solverOrder = config.integer('solver_order', 1);
    this.disableCorrector = config.integerList('disable_corrector');
    this.alphasCumprod = trainingAlphasCumprod(config, { floorTerminalAlpha: true });
  }

  setTimesteps(steps: number): void {
    const config = this.config;
    const trainSteps = this.alphasCumprod.length;
    let timesteps = multistepTimesteps(config, trainSteps, trainSteps, steps);
    const training = trainingSigmas(this.alphasCumprod);
    const logSigmas = logFloat32(training);
    const descending = Float32Array.from(training).reverse();
    let sigmas: number[];
    let last: number;
    if (config.boolean('use_karras_sigmas') || config.boolean('use_exponential_sigmas')) {
      const range = sigmaRange(config, descending);
      const karras = config.boolean('use_karras_sigmas');
      sigmas = karras ? karrasSigmas(range.min, range.max, steps) : exponentialSigmas(range.min, range.max, steps);
      timesteps = timestepsForSigmas(sigmas, logSigmas, karras);
      // Here diffusers' "sigma_min" final sigma is the last schedule sigma, not the training minimum.
      last = config.choice('final_sigmas_type', ['zero', 'sigma_min'] as const) === 'zero' ? 0 : sigmas[sigmas.length - 1];
    } else {
      sigmas = interpolateSigmas(timesteps, training);
      last = finalSigma(config, this.alphasCumprod);
    }
    this.sigmas = Float32Array.from([...sigmas, last]);
    this.timesteps = timesteps;
    this.modelOutputs = [];
    this.lowerOrderCount = 0;
    this.lastSample = null;
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

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): StepResult {
    assertSameLength(modelOutput, sample);
    if (this.timesteps.length === 0) throw new Error('UniPCMultistepScheduler.step called before setTimesteps');
    this.stepIndex ??= this.beginIndex ?? indexForTimestep(this.timesteps, timestep, 'last');
    const index = this.stepIndex;
    const converted = this.convertModelOutput(modelOutput, sample, this.sigmas[index]);
    const useCorrector = index > 0 && !this.disableCorrector.includes(index - 1) && this.lastSample !== null;
    const corrected = useCorrector ? this.correct(converted, this.lastSample as Float32Array, index) : sample;

    this.modelOutputs = [...this.modelOutputs, converted].slice(-this.solverOrder);
    const order = this.config.boolean('lower_order_final')
      ? Math.min(this.solverOrder, this.timesteps.length - index)
      : this.solverOrder;
    this.thisOrder = Math.min(order, this.lowerOrderCount + 1);
    this.lastSample = corrected;
    const prevSample = this.predict(corrected, index, this.thisOrder);
    if (this.lowerOrderCount < this.solverOrder) this.lowerOrderCount += 1;
    this.stepIndex = index + 1;
    return this.predictX0 ? { prevSample, predOriginalSample: converted } : { prevSample };
  }

  private convertModelOutput(modelOutput: Float32Array, sample: Float32Array, sigma: number): Float32Array {
    if (!this.predictX0) return noisePrediction(this.prediction, modelOutput, sample, sigma);
    const x0 = dataPrediction(this.prediction, modelOutput, sample, sigma);
    return this.config.boolean('thresholding') ? dynamicThreshold(this.config, x0) : x0;
  }

  /**
   * The coefficients of a UniP/UniC step from sigma `fromIndex` to `toIndex`, with earlier outputs at sigma
   * indices `history` (newest first) for the higher-order differences.
   */
  private coefficients(fromIndex: number, toIndex: number, history: number[], order: number): UniCoefficients {
    const lambdaFrom = lambdaOf(this.sigmas[fromIndex]);
    const h = lambdaOf(this.sigmas[toIndex]) - lambdaFrom;
    const rks = [...history.map((i) => (lambdaOf(this.sigmas[i]) - lambdaFrom) / h), 1];
    const hh = this.predictX0 ? -h : h;
    const hPhi1 = Math.expm1(hh);
    const bH = this.solverType === 'bh1' ? hh : Math.expm1(hh);
    const vandermonde: number[][] = [];
    const rhs: number[] = [];
    let hPhiK = hPhi1 / hh - 1;
    let factorial = 1;
    for (let i = 1; i <= order; i++) {
      vandermonde.push(rks.map((r) => r ** (i - 1)));
      rhs.push((hPhiK * factorial) / bH);
      factorial *= i + 1;
      hPhiK = hPhiK / hh - 1 / factorial;
    }
    return { h, hPhi1, bH, vandermonde, rhs, rks };
  }

  /** The common first-order part of both updates, from `x` at sigma `fromIndex` to sigma `toIndex`. */
  private baseUpdate(x: Float32Array, m0: Float32Array, fromIndex: number, toIndex: number, hPhi1: number): Float32Array {
    const to = alphaSigma(this.sigmas[toIndex]);
    const from = alphaSigma(this.sigmas[fromIndex]);
    return this.predictX0
      ? x.map((v, i) => (to.sigma / from.sigma) * v - to.alpha * hPhi1 * m0[i])
      : x.map((v, i) => (to.alpha / from.alpha) * v - to.sigma * hPhi1 * m0[i]);
  }

  /** UniP: predicts the sample at the next sigma. */
  private predict(x: Float32Array, index: number, order: number): Float32Array {
    const outputs = this.modelOutputs;
    const m0 = outputs[outputs.length - 1];
    const history = Array.from({ length: order - 1 }, (_, k) => index - (k + 1));
    const c = this.coefficients(index, index + 1, history, order);
    const differences = history.map((_, k) => {
      const mk = outputs[outputs.length - 2 - k];
      return mk.map((v, i) => (v - m0[i]) / c.rks[k]);
    });
    const rhos = order === 2 ? [0.5] : differences.length > 0 ? solveLinear(c.vandermonde.slice(0, -1).map((row) => row.slice(0, -1)), c.rhs.slice(0, -1)) : [];
    const scale = this.predictX0 ? alphaSigma(this.sigmas[index + 1]).alpha : alphaSigma(this.sigmas[index + 1]).sigma;
    const base = this.baseUpdate(x, m0, index, index + 1, c.hPhi1);
    return base.map((v, i) => {
      let residual = 0;
      for (let k = 0; k < differences.length; k++) residual += rhos[k] * differences[k][i];
      // Written as diffusers evaluates it: (scale · B(h)) · residual.
      return v - scale * c.bH * residual;
    });
  }

  /**
   * UniC: corrects the sample just predicted, using the model output computed at it; the corrected sample is
   * rebuilt from the one before the prediction (`lastSample`).
   */
  private correct(modelT: Float32Array, lastSample: Float32Array, index: number): Float32Array {
    const order = this.thisOrder;
    const outputs = this.modelOutputs;
    const m0 = outputs[outputs.length - 1];
    const history = Array.from({ length: order - 1 }, (_, k) => index - (k + 2));
    const c = this.coefficients(index - 1, index, history, order);
    const differences = history.map((_, k) => {
      const mk = outputs[outputs.length - 2 - k];
      return mk.map((v, i) => (v - m0[i]) / c.rks[k]);
    });
    const rhos = order === 1 ? [0.5] : solveLinear(c.vandermonde, c.rhs);
    const scale = this.predictX0 ? alphaSigma(this.sigmas[index]).alpha : alphaSigma(this.sigmas[index]).sigma;
    const base = this.baseUpdate(lastSample, m0, index - 1, index, c.hPhi1);
    const lastRho = rhos[rhos.length - 1];
    return base.map((v, i) => {
      let residual = 0;
      for (let k = 0; k < differences.length; k++) residual += rhos[k] * differences[k][i];
      return v - scale * c.bH * (residual + lastRho * (modelT[i] - m0[i]));
    });
  }
}
