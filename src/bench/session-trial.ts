// One session-options trial in a process of its own, so that its load time, speed and peak memory are not
// coloured by earlier trials. Started by session-sweep.ts with a SessionTrial as JSON; replies with a TrialResult.
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { peakRssBytes } from './machine.ts';

export interface SessionTrial {
  modelDir: string;
  part: 'unet' | 'vae_decoder';
  options: ort.InferenceSession.SessionOptions;
  width: number;
  height: number;
  /** U-Net batch: 2 is one classifier-free-guidance step, 1 is half of one. */
  batch: number;
  runs: number;
}

export interface TrialResult {
  loadMs: number;
  runMs: number[];
  rssAfterLoadBytes: number;
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

function feeds(trial: SessionTrial, session: ort.InferenceSession): Record<string, ort.Tensor> {
  const [h, w] = [trial.height / 8, trial.width / 8];
  if (trial.part === 'vae_decoder') return { latent_sample: new ort.Tensor('float32', uniform(4 * h * w, 1), [1, 4, h, w]) };
  const b = trial.batch;
  const context = session.inputMetadata.find((input) => input.name === 'encoder_hidden_states');
  const contextWidth = context?.isTensor && typeof context.shape[2] === 'number' ? context.shape[2] : 768;
  return {
    sample: new ort.Tensor('float32', uniform(b * 4 * h * w, 1), [b, 4, h, w]),
    timestep: new ort.Tensor('float32', new Float32Array(b).fill(500), [b]),
    encoder_hidden_states: new ort.Tensor('float32', uniform(b * 77 * contextWidth, 2), [b, 77, contextWidth]),
  };
}

export async function runTrial(trial: SessionTrial): Promise<TrialResult> {
  const loadStarted = performance.now();
  const session = await ort.InferenceSession.create(join(trial.modelDir, trial.part, 'model.onnx'), trial.options);
  const loadMs = performance.now() - loadStarted;
  const rssAfterLoadBytes = process.memoryUsage.rss();
  const inputs = feeds(trial, session);
  const runMs: number[] = [];
  for (let run = 0; run < trial.runs; run++) {
    const started = performance.now();
    await session.run(inputs);
    runMs.push(performance.now() - started);
  }
  await session.release();
  return { loadMs, runMs, rssAfterLoadBytes, peakRssBytes: peakRssBytes() };
}

if (process.send && process.argv[2]) {
  runTrial(JSON.parse(process.argv[2]) as SessionTrial).then(
    (result) => process.send!({ result }, () => process.exit(0)),
    (error: Error) => process.send!({ error: error.message }, () => process.exit(1)),
  );
}
