// One session-options trial in a process of its own, so that its load time, speed and peak memory are not
// coloured by earlier trials. Started by session-sweep.ts with a SessionTrial as JSON; replies with a TrialResult.
// A trial of several arms loads them all, then runs them in turns (A B A B …), so that a machine whose speed
// drifts (other work on it) slows every arm alike.
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { fuseAttention } from '../pipeline/attention-fusion.ts';
import { createSession } from '../pipeline/onnx-model.ts';
import { peakRssBytes } from './machine.ts';

export interface TrialArm {
  options: ort.InferenceSession.SessionOptions;
  /** U-Net batch: 2 is one classifier-free-guidance step, 1 is half of one. */
  batch: number;
  /** Fuse the graph's attention first, as the pipeline does on the CPU. */
  fuseAttention: boolean;
}

export interface SessionTrial {
  modelDir: string;
  part: 'unet' | 'vae_decoder';
  arms: TrialArm[];
  width: number;
  height: number;
  /** Runs of each arm. */
  runs: number;
}

export interface TrialResult {
  /** Per arm, in the trial's order. */
  arms: Array<{ loadMs: number; runMs: number[] }>;
  rssAfterLoadBytes: number;
  /** Of the whole process: with several arms, of all their sessions together. */
  peakRssBytes: number;
}

function uniform(length: number, seed: number): Float32Array {
  const values = new Float32Array(length);
  let state = seed;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    values[i] = state / 2 ** 31 - 1;
  }
  return values;
}

function tensorInput(session: ort.InferenceSession, name: string): ort.InferenceSession.TensorValueMetadata {
  const meta = session.inputMetadata.find((input) => input.name === name);
  if (!meta?.isTensor) throw new Error(`the model has no tensor input ${name}`);
  if (name !== 'timestep' && meta.type !== 'float32') throw new Error(`input ${name} is ${meta.type}: the sweep feeds float32 models only`);
  return meta;
}

/** Inputs shaped and typed as the export declares them (diffusers' converter, Optimum and our generator differ). */
function feeds(trial: SessionTrial, batch: number, session: ort.InferenceSession): Record<string, ort.Tensor> {
  const [h, w] = [trial.height / 8, trial.width / 8];
  if (trial.part === 'vae_decoder') {
    tensorInput(session, 'latent_sample');
    return { latent_sample: new ort.Tensor('float32', uniform(4 * h * w, 1), [1, 4, h, w]) };
  }
  tensorInput(session, 'sample');
  const contextWidth = tensorInput(session, 'encoder_hidden_states').shape[2];
  const width = typeof contextWidth === 'number' ? contextWidth : 768;
  const timestep = tensorInput(session, 'timestep');
  const count = timestep.shape.length === 0 || timestep.shape[0] === 1 ? 1 : batch;
  const dims = timestep.shape.length === 0 ? [] : [count];
  const t =
    timestep.type === 'int64' ? new ort.Tensor('int64', new BigInt64Array(count).fill(500n), dims) : new ort.Tensor('float32', new Float32Array(count).fill(500), dims);
  return {
    sample: new ort.Tensor('float32', uniform(batch * 4 * h * w, 1), [batch, 4, h, w]),
    timestep: t,
    encoder_hidden_states: new ort.Tensor('float32', uniform(batch * 77 * width, 2), [batch, 77, width]),
  };
}

export async function runTrial(trial: SessionTrial): Promise<TrialResult> {
  const loaded = [];
  for (const arm of trial.arms) {
    const loadStarted = performance.now();
    const fuse = arm.fuseAttention ? (model: Parameters<typeof fuseAttention>[0]) => fuseAttention(model) > 0 : undefined;
    const { session } = await createSession(join(trial.modelDir, trial.part, 'model.onnx'), arm.options, fuse);
    loaded.push({ session, inputs: feeds(trial, arm.batch, session), loadMs: performance.now() - loadStarted, runMs: [] as number[] });
  }
  const rssAfterLoadBytes = process.memoryUsage.rss();
  for (let run = 0; run < trial.runs; run++) {
    for (const arm of loaded) {
      const started = performance.now();
      await arm.session.run(arm.inputs);
      arm.runMs.push(performance.now() - started);
    }
  }
  await Promise.all(loaded.map((arm) => arm.session.release()));
  return { arms: loaded.map(({ loadMs, runMs }) => ({ loadMs, runMs })), rssAfterLoadBytes, peakRssBytes: peakRssBytes() };
}

if (process.send && process.argv[2]) {
  runTrial(JSON.parse(process.argv[2]) as SessionTrial).then(
    (result) => process.send!({ result }, () => process.exit(0)),
    (error: Error) => process.send!({ error: error.message }, () => process.exit(1)),
  );
}
