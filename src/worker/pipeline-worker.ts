// The pipeline's own thread: onnxruntime's session.run blocks the thread it runs on for the whole call, so the
// model lives here and the main thread stays free for Discord heartbeats and acknowledgements.
import { parentPort, workerData } from 'node:worker_threads';
import { formatParameters } from '../image/parameters.ts';
import { encodePng } from '../image/png.ts';
import { encodePreview } from '../image/preview.ts';
import { defaultEmbeddingsDir } from '../models/embeddings.ts';
import { StableDiffusionPipeline } from '../pipeline/pipeline.ts';
import { RequestError } from '../pipeline/types.ts';
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
loading.then(
  (pipeline) => send({ type: 'ready', info: pipeline.info }),
  (error: Error) => send({ type: 'load-error', message: error.message }),
);

async function generate({ id, request, preview }: Extract<ToWorker, { type: 'generate' }>): Promise<void> {
  const controller = new AbortController();
  running.set(id, controller);
  try {
    const pipeline = await loading;
    const output = await pipeline.generate({
      ...request,
      signal: controller.signal,
      onStep: (progress) => send({ type: 'step', id, progress }),
      ...(preview && {
        preview: {
          ...preview,
          onPreview: async ({ step, totalSteps, image }) => {
            const jpeg = await encodePreview(image);
            send({ type: 'preview', id, preview: { step, totalSteps, jpeg } }, [jpeg.buffer as ArrayBuffer]);
          },
        },
      }),
    });
    const pngStarted = performance.now();
    const parameters = formatParameters(output.settings);
    const png = await encodePng(output.image, parameters);
    const timings = { ...output.timings, pngMs: performance.now() - pngStarted };
    send({ type: 'result', id, result: { png, settings: output.settings, timings, parameters } }, [png.buffer as ArrayBuffer]);
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
      loading
        .then((pipeline) => pipeline.release())
        .catch(() => undefined)
        .finally(() => {
          send({ type: 'disposed' });
          port.close();
        });
      break;
  }
});
