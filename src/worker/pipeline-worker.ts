// The pipeline's own thread: onnxruntime's session.run blocks the thread it runs on for the whole call, so the
// model lives here and the main thread stays free for Discord heartbeats and acknowledgements.
import { parentPort, workerData } from 'node:worker_threads';
import { formatParameters } from '../image/parameters.ts';
import { encodePng } from '../image/png.ts';
import { encodePreview } from '../image/preview.ts';
import { defaultEmbeddingsDir } from '../models/embeddings.ts';
import { StableDiffusionPipeline } from '../pipeline/pipeline.ts';
import { SafetyChecker } from '../pipeline/safety-checker.ts';
import { RequestError, type StepProgress } from '../pipeline/types.ts';
import { runUpscale } from '../upscale/upscale-request.ts';
import { OnnxUpscaler } from '../upscale/upscaler.ts';
import type { RgbImage } from '../pipeline/vae.ts';
import type { FromWorker, PipelineThreadOptions, ToWorker } from './protocol.ts';

const port = parentPort!;
const options = workerData as PipelineThreadOptions;
const running = new Map<number, AbortController>();

function send(message: FromWorker, transfer: ArrayBuffer[] = []): void {
  port.postMessage(message, transfer);
}

const loading = StableDiffusionPipeline.fromPretrained(options.modelDir, {
  executionProvider: options.executionProvider,
  embeddingsDir: options.embeddingsDir ?? defaultEmbeddingsDir(),
  vaeDir: options.vaeDir,
  tinyVaeDir: options.tinyVaeDir,
});
const checking = options.safetyChecker
  ? SafetyChecker.load(options.safetyChecker, { executionProvider: options.executionProvider ?? 'cpu', clock: { runMs: 0 }, fuseAttention: false })
  : undefined;
// A configured checker that cannot load fails the load: images must not go out unchecked.
Promise.all([loading, checking]).then(
  ([pipeline]) => send({ type: 'ready', info: pipeline.info }),
  (error: Error) => send({ type: 'load-error', message: error.message }),
);

let upscaler: Promise<OnnxUpscaler> | undefined;

/** The configured upscaler, loaded on the first upscale request (none: Lanczos). */
async function loadUpscaler(): Promise<OnnxUpscaler | undefined> {
  const configured = options.upscaler;
  if (!configured) return undefined;
  upscaler ??= OnnxUpscaler.load(configured.file, configured.name, { executionProvider: options.executionProvider ?? 'cpu', clock: { runMs: 0 }, fuseAttention: false });
  return upscaler.catch((error: unknown) => {
    upscaler = undefined;
    throw error;
  });
}

async function generate({ id, request, preview }: Extract<ToWorker, { type: 'generate' }>): Promise<void> {
  const controller = new AbortController();
  running.set(id, controller);
  try {
    const pipeline = await loading;
    const call = {
      ...request,
      signal: controller.signal,
      onStep: (progress: StepProgress) => send({ type: 'step', id, progress }),
      ...(preview && {
        preview: {
          ...preview,
          onPreview: async ({ step, totalSteps, image }: { step: number; totalSteps: number; image: RgbImage }) => {
            const jpeg = await encodePreview(image);
            send({ type: 'preview', id, preview: { step, totalSteps, jpeg } }, [jpeg.buffer as ArrayBuffer]);
          },
        },
      }),
    };
    const upscale = request.upscale;
    const output = upscale ? await runUpscale(pipeline, await loadUpscaler(), { ...call, upscale }) : await pipeline.generate(call);
    const verdict = checking && (await (await checking).check(output.image));
    const pngStarted = performance.now();
    const parameters = formatParameters(output.settings);
    const png = await encodePng(output.image, parameters);
    const timings = { ...output.timings, pngMs: performance.now() - pngStarted };
    const result = { png, settings: output.settings, timings, parameters, ...(verdict && { nsfw: verdict.nsfw }) };
    send({ type: 'result', id, result }, [png.buffer as ArrayBuffer]);
  } catch (error) {
    const { name, message } = error as Error;
    send({ type: 'error', id, name, message, forUser: error instanceof RequestError });
  } finally {
    running.delete(id);
  }
}

port.on('message', (message: ToWorker) => {
  switch (message.type) {
    case 'generate':
      void generate(message);
      break;
    case 'cancel':
      running.get(message.id)?.abort();
      break;
    case 'dispose':
      for (const controller of running.values()) controller.abort();
      Promise.all([loading.then((pipeline) => pipeline.release()), upscaler?.then((model) => model.release()), checking?.then((checker) => checker.release())])
        .catch(() => undefined)
        .finally(() => {
          send({ type: 'disposed' });
          port.close();
        });
      break;
  }
});
