import { AlphaCumprodScheduler } from './alpha-cumprod.ts';
import { predictionType, type SchedulerConfig, trainingAlphasCumprod } from './config.ts';
import type { StepResult } from './scheduler.ts';
import { assertSameLength } from './sample-ops.ts';
import { spacedTimesteps } from './timesteps.ts';

/** `PNDMScheduler.__init__` defaults (diffusers 0.35). Stable Diffusion configs set skip_prk_steps: true. */
export const PNDM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  skip_prk_steps: false,
  set_alpha_to_one: false,
  prediction_type: 'epsilon',
  timestep_spacing: 'leading',
  steps_offset: 0,
} as const;

/** Runge–Kutta warm-up steps per pseudo step, and the number of pseudo steps it covers. */
const PNDM_ORDER = 4;

/**
 * Pseudo Numerical methods for Diffusion Models (Liu et al. 2022). With `skip_prk_steps` this is PLMS
 * (CompVis's sampler): N+1 model calls, the second timestep repeated, warming up with a second-order step.
 * Without it, 12 Runge–Kutta calls on the first three steps precede the linear multistep part (N+9 calls).
 */
export class PNDMScheduler extends AlphaCumprodScheduler {
  private numInferenceSteps = 0;
  private prkTimesteps: number[] = [];
  /** Past model outputs (e_theta), newest last. */
  private ets: Float32Array[] = [];
  private counter = 0;
  private currentSample: Float32Array | null = null;
  /** The Runge–Kutta weighted sum of the current pseudo step's model outputs. */
  private rkSum: Float32Array | null = null;

  constructor(config: SchedulerConfig) {
    super(config, predictionType(config, ['epsilon', 'v_prediction']), trainingAlphasCumprod(config));
  }

  override setTimesteps(steps: number): void {
    const trainSteps = this.alphasCumprod.length;
    const ascending = spacedTimesteps(this.config, trainSteps, steps, true).reverse();
    this.numInferenceSteps = steps;
    if (this.config.boolean('skip_prk_steps')) {
      this.prkTimesteps = [];
      const plms = [...ascending.slice(0, -1), ...ascending.slice(-2, -1), ...ascending.slice(-1)];
      this.timesteps = plms.reverse();
    } else {
      const halfStep = Math.floor(Math.floor(trainSteps / steps) / 2);
      const pairs = ascending.slice(-PNDM_ORDER).flatMap((t) => [t, t + halfStep]);
      const doubled = pairs.slice(0, -1).flatMap((t) => [t, t]);
      this.prkTimesteps = doubled.slice(1, -1).reverse();
      this.timesteps = [...this.prkTimesteps, ...ascending.slice(0, -3).reverse()];
    }
    this.ets = [];
    this.counter = 0;
    this.currentSample = null;
    this.rkSum = null;
  }

  override step(modelOutput: Float32Array, timestep: number, sample: Float32Array): StepResult {
    assertSameLength(modelOutput, sample);
    if (this.numInferenceSteps === 0) throw new Error('PNDMScheduler.step called before setTimesteps');
    const prevSample =
      this.counter < this.prkTimesteps.length
        ? this.stepRungeKutta(modelOutput, timestep, sample)
        : this.stepLinearMultistep(modelOutput, timestep, sample);
    this.counter += 1;
    return { prevSample };
  }

  private stepRungeKutta(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    const stepSize = Math.floor(this.alphasCumprod.length / this.numInferenceSteps);
    const prevTimestep = timestep - (this.counter % 2 ? 0 : Math.floor(stepSize / 2));
    const pseudoStepTimestep = this.prkTimesteps[Math.floor(this.counter / 4) * 4];
    const stage = this.counter % 4;
    const accumulate = (weight: number) => {
      const sum = this.rkSum ?? new Float32Array(modelOutput.length);
      this.rkSum = sum.map((v, i) => v + weight * modelOutput[i]);
    };
    let output = modelOutput;
    if (stage === 0) {
      accumulate(1 / 6);
      this.ets.push(modelOutput);
      this.currentSample = sample;
    } else if (stage === 1 || stage === 2) {
      accumulate(1 / 3);
    } else {
      const sum = this.rkSum as Float32Array;
      output = sum.map((v, i) => v + (1 / 6) * modelOutput[i]);
      this.rkSum = null;
    }
    return this.previousSample(this.currentSample ?? sample, pseudoStepTimestep, prevTimestep, output);
  }

  private stepLinearMultistep(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    const stepSize = Math.floor(this.alphasCumprod.length / this.numInferenceSteps);
    let from = timestep;
    let to = timestep - stepSize;
    if (this.counter !== 1) {
      this.ets = [...this.ets.slice(-3), modelOutput];
    } else {
      // The repeated second timestep: redo the first step with the average of both outputs (a Heun step).
      to = timestep;
      from = timestep + stepSize;
    }
    const ets = this.ets;
    const n = ets.length;
    let output: Float32Array;
    let base = sample;
    if (n === 1 && this.counter === 0) {
      output = modelOutput;
      this.currentSample = sample;
    } else if (n === 1 && this.counter === 1) {
      output = modelOutput.map((v, i) => (v + ets[0][i]) / 2);
      base = this.currentSample as Float32Array;
      this.currentSample = null;
    } else if (n === 2) {
      output = ets[1].map((v, i) => (3 * v - ets[0][i]) / 2);
    } else if (n === 3) {
      output = ets[2].map((v, i) => (23 * v - 16 * ets[1][i] + 5 * ets[0][i]) / 12);
    } else {
      output = ets[n - 1].map((v, i) => (1 / 24) * (55 * v - 59 * ets[n - 2][i] + 37 * ets[n - 3][i] - 9 * ets[n - 4][i]));
    }
    return this.previousSample(base, from, to, output);
  }

  /** x_{t−δ} from x_t and e_theta: formula (9) of the PNDM paper. */
  private previousSample(sample: Float32Array, timestep: number, prevTimestep: number, modelOutput: Float32Array): Float32Array {
    const f = Math.fround;
    const alphaProd = this.alphaAt(timestep);
    const alphaProdPrev = this.alphaAtPrevious(prevTimestep);
    const betaProd = f(1 - alphaProd);
    const betaProdPrev = f(1 - alphaProdPrev);
    const epsilon =
      this.prediction === 'v_prediction'
        ? modelOutput.map((v, i) => Math.sqrt(alphaProd) * v + Math.sqrt(betaProd) * sample[i])
        : modelOutput;
    const sampleCoefficient = f(Math.sqrt(f(alphaProdPrev / alphaProd)));
    const outputDenominator = f(
      f(alphaProd * f(Math.sqrt(betaProdPrev))) + f(Math.sqrt(f(f(alphaProd * betaProd) * alphaProdPrev))),
    );
    const outputCoefficient = f(alphaProdPrev - alphaProd) / outputDenominator;
    return sample.map((x, i) => sampleCoefficient * x - outputCoefficient * epsilon[i]);
  }
}
