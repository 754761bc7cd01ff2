import { Worker } from 'node:worker_threads';
import type { PreviewImage } from '../image/preview.ts';
import type { PreviewCadence } from '../pipeline/preview-schedule.ts';
import { RequestError, type GenerateRequest, type ModelInfo, type StepProgress } from '../pipeline/types.ts';
import { RUNNING_FROM_SOURCE, siblingModule } from '../runtime.ts';
import type { FromWorker, GenerateResult, PipelineThreadOptions, ToWorker } from './protocol.ts';

export type { GenerateResult, PipelineThreadOptions } from './protocol.ts';

export interface ThreadGenerateOptions {
  signal?: AbortSignal;
  onStep?: (progress: StepProgress) => void;
  /** Previews of the image forming, decoded and encoded in the pipeline's thread. */
  preview?: PreviewCadence & { onPreview: (preview: PreviewImage) => void };
}

interface PendingGeneration {
  resolve: (result: GenerateResult) => void;
  reject: (error: Error) => void;
  onStep?: (progress: StepProgress) => void;
  onPreview?: (preview: PreviewImage) => void;
}

const WORKER_URL = RUNNING_FROM_SOURCE ? new URL('./source-entry.mjs', import.meta.url) : siblingModule(import.meta.url, 'pipeline-worker');

/**
 * The one Stable Diffusion pipeline, running in its own worker thread: load once, generate with progress,
 * cancel, dispose. If the thread dies, pending work fails with a clear error and the next generate starts a
 * fresh thread.
 */
export class PipelineThread {
  private worker!: Worker;
  private pending = new Map<number, PendingGeneration>();
  private nextId = 1;
  private disposed = false;
  private crashed = false;
  ready!: Promise<ModelInfo>;

  private constructor(private readonly options: PipelineThreadOptions) {
    this.spawn();
  }

  static start(options: PipelineThreadOptions): PipelineThread {
    return new PipelineThread(options);
  }

  generate(request: GenerateRequest, options: ThreadGenerateOptions = {}): Promise<GenerateResult> {
    if (this.disposed) return Promise.reject(new Error('The pipeline has been shut down'));
    if (options.signal?.aborted) return Promise.reject(abortError());
    if (this.crashed) this.spawn();
    return this.ready.then(
      () =>
        new Promise<GenerateResult>((resolve, reject) => {
          const id = this.nextId++;
          const onAbort = () => this.post({ type: 'cancel', id });
          options.signal?.addEventListener('abort', onAbort, { once: true });
          const settle = () => options.signal?.removeEventListener('abort', onAbort);
          this.pending.set(id, {
            resolve: (result) => (settle(), resolve(result)),
            reject: (error) => (settle(), reject(error)),
            onStep: options.onStep,
            onPreview: options.preview?.onPreview,
          });
          this.post({ type: 'generate', id, request, preview: options.preview && cadenceOf(options.preview) });
        }),
    );
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    this.post({ type: 'dispose' });
    const timeout = setTimeout(() => void this.worker.terminate(), 10_000);
    await exited;
    clearTimeout(timeout);
  }

  private spawn(): void {
    this.crashed = false;
    const worker = new Worker(WORKER_URL, { workerData: this.options });
    this.worker = worker;
    this.ready = new Promise<ModelInfo>((resolve, reject) => {
      worker.on('message', (message: FromWorker) => {
        if (message.type === 'ready') resolve(message.info);
        else if (message.type === 'load-error') reject(new Error(message.message));
        else this.handle(message);
      });
      worker.once('exit', (code) => {
        const error = new Error(`The pipeline thread stopped unexpectedly (exit code ${code})`);
        reject(error);
        this.failPending(error);
        // Replaced on the next generate, not now, so a thread that keeps dying does not spin.
        this.crashed = !this.disposed;
      });
      worker.once('error', (error) => {
        reject(error);
        this.failPending(new Error(`The pipeline thread crashed: ${error.message}`));
      });
    });
    this.ready.catch(() => undefined);
  }

  private handle(message: Exclude<FromWorker, { type: 'ready' | 'load-error' }>): void {
    if (message.type === 'disposed') return;
    const pending = this.pending.get(message.id);
    if (!pending) return;
    if (message.type === 'step') {
      pending.onStep?.(message.progress);
      return;
    }
    if (message.type === 'preview') {
      pending.onPreview?.(message.preview);
      return;
    }
    this.pending.delete(message.id);
    if (message.type === 'result') {
      pending.resolve(message.result);
    } else {
      const error = message.forUser ? new RequestError(message.message) : new Error(message.message);
      error.name = message.name;
      pending.reject(error);
    }
  }

  private failPending(error: Error): void {
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }

  private post(message: ToWorker): void {
    this.worker.postMessage(message);
  }
}

function abortError(): Error {
  const error = new Error('Generation was cancelled');
  error.name = 'AbortError';
  return error;
}

/** What the thread needs to know of a preview request: everything but the callback, which stays here. */
function cadenceOf({ onPreview: _, ...cadence }: NonNullable<ThreadGenerateOptions['preview']>): PreviewCadence {
  return cadence;
}
