import type { ConfigJson } from './configs.ts';
import { SCHEDULER_BASE, SD1_TEXT_ENCODER, SD_VAE } from './stable-diffusion.ts';

/*
 * The configs of Stable Diffusion XL as stabilityai/stable-diffusion-xl-base-1.0 ships them: what a single-file
 * SDXL checkpoint is built with, and the SDXL benchmark model's architecture.
 */

/** SDXL's first text encoder: CLIP ViT-L/14's text model, as SD 1.x's. */
export const SDXL_TEXT_ENCODER: ConfigJson = SD1_TEXT_ENCODER;

/** SDXL's second: OpenCLIP ViT-bigG/14's text model with its projection (694,659,840 parameters). */
export const SDXL_TEXT_ENCODER_2: ConfigJson = {
  ...SD1_TEXT_ENCODER,
  architectures: ['CLIPTextModelWithProjection'],
  hidden_size: 1280,
  intermediate_size: 5120,
  projection_dim: 1280,
  num_hidden_layers: 32,
  num_attention_heads: 20,
  hidden_act: 'gelu',
};

/** SDXL's U-Net (2,567,463,684 parameters): three levels, 2048-wide context, the text_time embedding. */
export const SDXL_UNET: ConfigJson = {
  sample_size: 128,
  in_channels: 4,
  out_channels: 4,
  down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
  up_block_types: ['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'],
  block_out_channels: [320, 640, 1280],
  layers_per_block: 2,
  transformer_layers_per_block: [1, 2, 10],
  attention_head_dim: [5, 10, 20],
  cross_attention_dim: 2048,
  norm_num_groups: 32,
  norm_eps: 1e-5,
  flip_sin_to_cos: true,
  freq_shift: 0,
  downsample_padding: 1,
  use_linear_projection: true,
  upcast_attention: false,
  addition_embed_type: 'text_time',
  addition_time_embed_dim: 256,
  projection_class_embeddings_input_dim: 2816,
};

/** SDXL's AutoencoderKL: SD's architecture with its own scaling factor; it overflows in float16 (force_upcast). */
export const SDXL_VAE: ConfigJson = { ...SD_VAE, sample_size: 1024, scaling_factor: 0.13025, force_upcast: true };

const SDXL_SCHEDULER_BASE = { ...SCHEDULER_BASE, interpolation_type: 'linear', prediction_type: 'epsilon', sample_max_value: 1.0, use_karras_sigmas: false };

/** SDXL base's scheduler/scheduler_config.json. */
export const SDXL_SCHEDULER = { _class_name: 'EulerDiscreteScheduler', ...SDXL_SCHEDULER_BASE, timestep_spacing: 'leading' };

/** SDXL-Turbo's: Euler a over trailing timesteps, for 1-4 steps without guidance. */
export const SDXL_TURBO_SCHEDULER = { _class_name: 'EulerAncestralDiscreteScheduler', ...SDXL_SCHEDULER_BASE, timestep_spacing: 'trailing' };

/** SDXL-Turbo was trained at 512x512. */
export const SDXL_TURBO_SAMPLE_SIZE = 64;
