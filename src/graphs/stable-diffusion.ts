import type { ConfigJson } from './configs.ts';

/*
 * The configs of the standard Stable Diffusion releases (runwayml/stable-diffusion-v1-5 and
 * stabilityai/stable-diffusion-2-1), as their diffusers repositories ship them: what a single-file checkpoint
 * of a standard architecture is built with, and the benchmark model's architecture.
 */

export const DIFFUSERS_VERSION = '0.27.2';

/** SD 1.x: CLIP ViT-L/14's text model (123,060,480 parameters). */
export const SD1_TEXT_ENCODER: ConfigJson = {
  architectures: ['CLIPTextModel'],
  model_type: 'clip_text_model',
  vocab_size: 49408,
  hidden_size: 768,
  intermediate_size: 3072,
  projection_dim: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  max_position_embeddings: 77,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
  bos_token_id: 0,
  eos_token_id: 2,
  pad_token_id: 1,
};

/** SD 2.x: OpenCLIP ViT-H/14's text model without its last layer, as diffusers converts it. */
export const SD2_TEXT_ENCODER: ConfigJson = {
  ...SD1_TEXT_ENCODER,
  hidden_size: 1024,
  intermediate_size: 4096,
  projection_dim: 512,
  num_hidden_layers: 23,
  num_attention_heads: 16,
  hidden_act: 'gelu',
};

/** SD 1.5's UNet2DConditionModel (859,520,964 parameters). */
export const SD1_UNET: ConfigJson = {
  sample_size: 64,
  in_channels: 4,
  out_channels: 4,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
  block_out_channels: [320, 640, 1280, 1280],
  layers_per_block: 2,
  attention_head_dim: 8,
  cross_attention_dim: 768,
  norm_num_groups: 32,
  norm_eps: 1e-5,
  flip_sin_to_cos: true,
  freq_shift: 0,
  downsample_padding: 1,
  use_linear_projection: false,
  upcast_attention: false,
};

/** SD 2.1's U-Net: 1024-wide context, 64-wide heads, linear projections, attention upcast in half precision. */
export const SD2_UNET: ConfigJson = {
  ...SD1_UNET,
  sample_size: 96,
  attention_head_dim: [5, 10, 20, 20],
  cross_attention_dim: 1024,
  use_linear_projection: true,
  upcast_attention: true,
};

/** The AutoencoderKL of SD 1.x and 2.x (83,653,863 parameters; the decoder half 49,490,199). */
export const SD_VAE: ConfigJson = {
  _class_name: 'AutoencoderKL',
  in_channels: 3,
  out_channels: 3,
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
  up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
  block_out_channels: [128, 256, 512, 512],
  layers_per_block: 2,
  latent_channels: 4,
  norm_num_groups: 32,
  sample_size: 512,
  scaling_factor: 0.18215,
};

/** The scheduler settings every Stable Diffusion release shares (SD 1.x, 2.x and XL). */
export const SCHEDULER_BASE = {
  _diffusers_version: DIFFUSERS_VERSION,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
};

/** SD 1.5's scheduler/scheduler_config.json. */
export const SD1_SCHEDULER = { _class_name: 'PNDMScheduler', ...SCHEDULER_BASE, prediction_type: 'epsilon' };

/** SD 2.1's (768-v) scheduler/scheduler_config.json. */
export const SD2_SCHEDULER = { _class_name: 'DDIMScheduler', ...SCHEDULER_BASE, prediction_type: 'v_prediction' };

export type ComponentName = 'text_encoder' | 'text_encoder_2' | 'unet' | 'vae_decoder' | 'vae_encoder';

/**
 * model_index.json of the ONNX pipeline the builder writes; `markers` follow the version (see TINY_MODEL_MARKER).
 * With text_encoder_2 it is an SDXL pipeline in Optimum's layout (ORTStableDiffusionXLPipeline, tokenizer_2).
 */
export function onnxPipelineIndex(schedulerClass: string, components: readonly ComponentName[], markers: Record<string, unknown> = {}): Record<string, unknown> {
  const onnx = (component: ComponentName) => (components.includes(component) ? ['diffusers', 'OnnxRuntimeModel'] : [null, null]);
  const xl = components.includes('text_encoder_2');
  return {
    _class_name: xl ? 'ORTStableDiffusionXLPipeline' : 'OnnxStableDiffusionPipeline',
    _diffusers_version: DIFFUSERS_VERSION,
    ...markers,
    feature_extractor: [null, null],
    ...(xl ? {} : { requires_safety_checker: false, safety_checker: [null, null] }),
    scheduler: ['diffusers', schedulerClass],
    text_encoder: onnx('text_encoder'),
    ...(xl ? { text_encoder_2: onnx('text_encoder_2') } : {}),
    tokenizer: ['transformers', 'CLIPTokenizer'],
    ...(xl ? { tokenizer_2: ['transformers', 'CLIPTokenizer'] } : {}),
    unet: onnx('unet'),
    vae_decoder: onnx('vae_decoder'),
    vae_encoder: onnx('vae_encoder'),
  };
}

/** Pretty JSON with a final newline, as diffusers writes its configs. */
export function jsonFile(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n';
}

const START_OF_TEXT = '<|startoftext|>';
const END_OF_TEXT = '<|endoftext|>';

/** tokenizer_config.json and special_tokens_map.json of a CLIPTokenizer (SD 1.x pads with end-of-text, SD 2.x with "!"). */
export function clipTokenizerConfigFiles(padToken: typeof END_OF_TEXT | '!', nameOrPath = 'openai/clip-vit-large-patch14'): Record<string, string> {
  const specialToken = (content: string) => ({ content, lstrip: false, normalized: true, rstrip: false, single_word: false });
  const addedToken = (content: string) => ({ __type: 'AddedToken', ...specialToken(content) });
  const tokenizerConfig = {
    add_prefix_space: false,
    bos_token: addedToken(START_OF_TEXT),
    do_lower_case: true,
    eos_token: addedToken(END_OF_TEXT),
    errors: 'replace',
    model_max_length: 77,
    name_or_path: nameOrPath,
    pad_token: padToken,
    special_tokens_map_file: './special_tokens_map.json',
    tokenizer_class: 'CLIPTokenizer',
    unk_token: addedToken(END_OF_TEXT),
  };
  const specialTokensMap = {
    bos_token: specialToken(START_OF_TEXT),
    eos_token: specialToken(END_OF_TEXT),
    pad_token: padToken,
    unk_token: specialToken(END_OF_TEXT),
  };
  return { 'tokenizer_config.json': jsonFile(tokenizerConfig), 'special_tokens_map.json': jsonFile(specialTokensMap) };
}
