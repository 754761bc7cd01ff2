import type { GeneratedImage, GeneratorCallOptions, ImageGenerator } from '../jobs/runner.ts';
import type { ModelCatalog } from '../models/catalog.ts';
import type { ExecutionProvider } from '../pipeline/onnx-model.ts';
import type { GenerateRequest, ModelInfo } from '../pipeline/types.ts';
import { PipelineThread } from './pipeline-thread.ts';

export interface ModelSwitcherOptions {
  catalog: ModelCatalog;
  executionProvider?: ExecutionProvider;
  /** The upscaler of upscale requests; Lanczos when absent. */
  upscaler?: { name: string; file: string };
  /** The safety checker's folder, loaded beside each model. */
  safetyChecker?: string;
}

/**
 * Several installed models behind one generator, with one pipeline in memory at a time: a request for another
 * model disposes the current pipeline thread (freeing its memory) before the requested one is loaded. Calls run
 * one after another, so a switch never happens under a running generation.
 */
export class ModelSwitcher implements ImageGenerator {
  /** The default model, once loaded. */
  readonly ready: Promise<ModelInfo>;
  private thread: PipelineThread;
  private loaded: string | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private disposed = false;

  constructor(private readonly options: ModelSwitcherOptions) {
    this.thread = this.startThread(options.catalog.defaultName);
    this.ready = this.thread.ready;
  }

  /** The model whose pipeline is in memory (or loading); undefined after a failed load or dispose. */
  get loadedModel(): string | undefined {
    return this.loaded;
  }

  generate(request: GenerateRequest, options: GeneratorCallOptions = {}): Promise<GeneratedImage> {
    const run = this.tail.then(() => this.run(request, options));
    this.tail = run.catch(() => undefined);
    return run;
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    const last = this.tail.then(() => this.thread.dispose());
    this.tail = last;
    this.loaded = undefined;
    await last;
  }

  private async run(request: GenerateRequest, { model, onModelLoad, signal, onStep, preview }: GeneratorCallOptions): Promise<GeneratedImage> {
    if (this.disposed) throw new Error('The pipeline has been shut down');
    const entry = this.options.catalog.resolve(model);
    if (entry.name !== this.loaded) {
      signal?.throwIfAborted();
      onModelLoad?.(entry.name);
      await this.thread.dispose();
      this.thread = this.startThread(entry.name);
    }
    try {
      await this.thread.ready;
    } catch (error) {
      // Forget it, so the next request for this model tries the load again.
      this.loaded = undefined;
      throw new Error(`The model ${entry.name} could not be loaded: ${(error as Error).message}`, { cause: error });
    }
    return this.thread.generate(request, { signal, onStep, preview });
  }

  private startThread(name: string): PipelineThread {
    const { dir, tinyVaeDir } = this.options.catalog.resolve(name);
    this.loaded = name;
    const { executionProvider, upscaler, safetyChecker } = this.options;
    return PipelineThread.start({ modelDir: dir, tinyVaeDir, executionProvider, upscaler, safetyChecker });
  }
}
