import type { PreviewImage } from '../image/preview.ts';
import type { ExecutionProvider } from '../pipeline/onnx-model.ts';
import type { PreviewCadence } from '../pipeline/preview-schedule.ts';
import type { GenerateRequest, GenerationSettings, ModelInfo, StageTimings, StepProgress } from '../pipeline/types.ts';

export interface PipelineThreadOptions {
  modelDir: string;
  /** A VAE folder to decode with instead of the model's own. */
  vaeDir?: string;
  /** A tiny decoder (TAESD) to load beside the model's VAE, for previews and requests for it. */
  tinyVaeDir?: string;
  executionProvider?: ExecutionProvider;
  /** Textual-inversion embeddings; EMBEDDINGS_DIR or `<repo>/embeddings` when absent. */
  embeddingsDir?: string;
  /** The ONNX upscaler of upscale requests (loaded on the first one); Lanczos when absent. */
  upscaler?: { name: string; file: string };
  /** The safety checker's folder: every image is checked after decoding (GenerateResult.nsfw). */
  safetyChecker?: string;
}

export interface GenerateResult {
  /** PNG with the AUTOMATIC1111 `parameters` text chunk. */
  png: Uint8Array;
  settings: GenerationSettings;
  timings: StageTimings & { pngMs: number };
  parameters: string;
  /** The safety checker's verdict; undefined when no checker is configured. */
  nsfw?: boolean;
}

export type ToWorker =
  | { type: 'generate'; id: number; request: GenerateRequest; preview?: PreviewCadence }
  | { type: 'cancel'; id: number }
  | { type: 'dispose' };

export type FromWorker =
  | { type: 'ready'; info: ModelInfo }
  | { type: 'load-error'; message: string }
  | { type: 'step'; id: number; progress: StepProgress }
  | { type: 'preview'; id: number; preview: PreviewImage }
  | { type: 'result'; id: number; result: GenerateResult }
  /** forUser: the pipeline threw a RequestError, whose message is for the requester. */
  | { type: 'error'; id: number; name: string; message: string; forUser: boolean }
  | { type: 'disposed' };
