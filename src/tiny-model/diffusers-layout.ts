/** The config files both generated models share with a diffusers ONNX Stable Diffusion export. */

export const DIFFUSERS_VERSION = '0.27.2';

/** SD 1.5's scheduler/scheduler_config.json. */
export const SD15_SCHEDULER = {
  _class_name: 'PNDMScheduler',
  _diffusers_version: DIFFUSERS_VERSION,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
};

/** model_index.json of an ONNX pipeline without safety checker or VAE encoder; `markers` follow the version. */
export function onnxPipelineIndex(schedulerClass: string, markers: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    _class_name: 'OnnxStableDiffusionPipeline',
    _diffusers_version: DIFFUSERS_VERSION,
    ...markers,
    feature_extractor: [null, null],
    requires_safety_checker: false,
    safety_checker: [null, null],
    scheduler: ['diffusers', schedulerClass],
    text_encoder: ['diffusers', 'OnnxRuntimeModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'],
    unet: ['diffusers', 'OnnxRuntimeModel'],
    vae_decoder: ['diffusers', 'OnnxRuntimeModel'],
    vae_encoder: [null, null],
  };
}

/** Pretty JSON with a final newline, as diffusers writes its configs. */
export function jsonFile(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n';
}
