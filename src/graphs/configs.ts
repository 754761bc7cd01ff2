/*
 * The config.json of each model class the builder writes, in the libraries' own (snake_case) form: what
 * diffusers and transformers save beside the weights, with their constructors' defaults for keys an older
 * file leaves out. Resolving a config checks that the builder supports every feature it turns on.
 */

export type ConfigJson = Record<string, unknown>;

/** transformers' CLIPTextConfig (CLIPTextModel, or CLIPTextModelWithProjection when `architectures` says so). */
export interface ClipTextConfig {
  architectures: string[];
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  projection_dim: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  hidden_act: 'quick_gelu' | 'gelu';
  layer_norm_eps: number;
  bos_token_id: number;
  eos_token_id: number;
  pad_token_id: number;
}

/** diffusers' UNet2DConditionModel, for the block types Stable Diffusion 1.x, 2.x, XL and LCM use. */
export interface UNetConfig {
  sample_size: number | null;
  in_channels: number;
  out_channels: number;
  flip_sin_to_cos: boolean;
  freq_shift: number;
  down_block_types: DownBlockType[];
  mid_block_type: 'UNetMidBlock2DCrossAttn';
  up_block_types: UpBlockType[];
  block_out_channels: number[];
  layers_per_block: number;
  downsample_padding: number;
  norm_num_groups: number;
  norm_eps: number;
  cross_attention_dim: number;
  transformer_layers_per_block: number | number[];
  reverse_transformer_layers_per_block: number[] | null;
  /** Heads per block: diffusers reads `num_attention_heads ?? attention_head_dim` (a historical misnomer). */
  attention_head_dim: number | number[];
  num_attention_heads: number | number[] | null;
  use_linear_projection: boolean;
  upcast_attention: boolean;
  /** "text_time" (SDXL): the pooled text embedding and the size/crop ids join the time embedding. */
  addition_embed_type: 'text_time' | null;
  addition_time_embed_dim: number | null;
  projection_class_embeddings_input_dim: number | null;
  /** LCM: a guidance embedding of this width is projected into the time embedding. */
  time_cond_proj_dim: number | null;
  conv_in_kernel: number;
  conv_out_kernel: number;
}

export type DownBlockType = 'CrossAttnDownBlock2D' | 'DownBlock2D';
export type UpBlockType = 'CrossAttnUpBlock2D' | 'UpBlock2D';

/** diffusers' AutoencoderKL. */
export interface AutoencoderKLConfig {
  _class_name: 'AutoencoderKL';
  in_channels: number;
  out_channels: number;
  down_block_types: string[];
  up_block_types: string[];
  block_out_channels: number[];
  layers_per_block: number;
  latent_channels: number;
  norm_num_groups: number;
  sample_size: number;
  scaling_factor: number;
  shift_factor: number | null;
  force_upcast: boolean;
  use_quant_conv: boolean;
  use_post_quant_conv: boolean;
  mid_block_add_attention: boolean;
}

/** diffusers' AutoencoderTiny (TAESD). */
export interface AutoencoderTinyConfig {
  _class_name: 'AutoencoderTiny';
  in_channels: number;
  out_channels: number;
  encoder_block_out_channels: number[];
  decoder_block_out_channels: number[];
  num_encoder_blocks: number[];
  num_decoder_blocks: number[];
  act_fn: 'relu';
  upsample_fn: 'nearest';
  upsampling_scaling_factor: number;
  latent_channels: number;
  latent_magnitude: number;
  latent_shift: number;
  scaling_factor: number;
  shift_factor: number;
  force_upcast: boolean;
}

export type VaeConfig = AutoencoderKLConfig | AutoencoderTinyConfig;

/** Reads a config key, defaulting when absent (or null, where the default is not null), checking its type. */
class ConfigReader {
  constructor(
    private readonly json: ConfigJson,
    private readonly what: string,
  ) {}

  number(key: string, fallback: number): number {
    const value = this.json[key] ?? fallback;
    if (typeof value !== 'number' || !Number.isFinite(value)) throw this.bad(key, 'a number');
    return value;
  }

  positiveInteger(key: string, fallback: number): number {
    const value = this.number(key, fallback);
    if (!Number.isInteger(value) || value < 1) throw this.bad(key, 'a positive whole number');
    return value;
  }

  optionalInteger(key: string): number | null {
    const value = this.json[key] ?? null;
    if (value === null) return null;
    return this.positiveInteger(key, 0);
  }

  boolean(key: string, fallback: boolean): boolean {
    const value = this.json[key] ?? fallback;
    if (typeof value !== 'boolean') throw this.bad(key, 'true or false');
    return value;
  }

  integers(key: string, fallback: number[]): number[] {
    const value = this.json[key] ?? fallback;
    if (!Array.isArray(value) || value.length === 0 || !value.every((item) => Number.isInteger(item) && item > 0)) throw this.bad(key, 'a list of positive whole numbers');
    return value as number[];
  }

  integerOrIntegers(key: string, fallback: number | number[]): number | number[] {
    const value = this.json[key] ?? fallback;
    return typeof value === 'number' ? this.positiveInteger(key, value) : this.integers(key, fallback as number[]);
  }

  oneOf<T extends string | null>(key: string, allowed: readonly T[], fallback: T): T {
    const value = (this.json[key] ?? fallback) as T;
    if (!allowed.includes(value)) throw this.unsupported(key, value, allowed);
    return value;
  }

  strings<T extends string>(key: string, allowed: readonly T[], fallback: T[]): T[] {
    const value = this.json[key] ?? fallback;
    if (!Array.isArray(value) || value.length === 0) throw this.bad(key, 'a list of block types');
    for (const item of value) if (!allowed.includes(item)) throw this.unsupported(key, item, allowed);
    return value as T[];
  }

  /** A feature the builder does not implement must be off: absent, null, false or its default. */
  off(key: string, ...offValues: unknown[]): void {
    const value = this.json[key];
    if (value === undefined || value === null || value === false || offValues.includes(value)) return;
    if (Array.isArray(value) && value.every((item) => item === false)) return;
    throw this.unsupported(key, value, offValues);
  }

  private bad(key: string, expected: string): Error {
    return new Error(`${this.what} config: ${key} must be ${expected} (got ${JSON.stringify(this.json[key])})`);
  }

  private unsupported(key: string, value: unknown, allowed: readonly unknown[]): Error {
    const options = allowed.filter((item) => item !== null && item !== false).map((item) => JSON.stringify(item));
    return new Error(`${this.what} config: ${key} ${JSON.stringify(value)} is not supported${options.length ? ` (supported: ${options.join(', ')})` : ''}`);
  }
}

export function resolveClipTextConfig(json: ConfigJson): ClipTextConfig {
  const read = new ConfigReader(json, 'text encoder');
  const architectures = Array.isArray(json.architectures) ? (json.architectures as string[]) : ['CLIPTextModel'];
  const model = architectures.find((name) => name === 'CLIPTextModel' || name === 'CLIPTextModelWithProjection');
  if (!model) throw new Error(`text encoder config: architecture ${JSON.stringify(architectures)} is not supported (supported: CLIPTextModel, CLIPTextModelWithProjection)`);
  const hidden = read.positiveInteger('hidden_size', 512);
  const config: ClipTextConfig = {
    architectures: [model],
    vocab_size: read.positiveInteger('vocab_size', 49408),
    hidden_size: hidden,
    intermediate_size: read.positiveInteger('intermediate_size', 2048),
    projection_dim: read.positiveInteger('projection_dim', 512),
    num_hidden_layers: read.positiveInteger('num_hidden_layers', 12),
    num_attention_heads: read.positiveInteger('num_attention_heads', 8),
    max_position_embeddings: read.positiveInteger('max_position_embeddings', 77),
    hidden_act: read.oneOf('hidden_act', ['quick_gelu', 'gelu'] as const, 'quick_gelu'),
    layer_norm_eps: read.number('layer_norm_eps', 1e-5),
    bos_token_id: read.number('bos_token_id', 49406),
    eos_token_id: read.number('eos_token_id', 49407),
    pad_token_id: read.number('pad_token_id', 1),
  };
  if (hidden % config.num_attention_heads !== 0) throw new Error(`text encoder config: hidden_size ${hidden} does not split into ${config.num_attention_heads} heads`);
  return config;
}

/**
 * diffusers' StableDiffusionSafetyChecker: a transformers CLIPConfig whose vision_config is the CLIP vision tower
 * (ViT-L/14 in CompVis/stable-diffusion-safety-checker) and projection_dim the width its concepts are compared in.
 */
export interface SafetyCheckerConfig {
  architectures: ['StableDiffusionSafetyChecker'];
  projection_dim: number;
  vision_config: ClipVisionConfig;
}

export interface ClipVisionConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_channels: number;
  image_size: number;
  patch_size: number;
  hidden_act: 'quick_gelu' | 'gelu';
  layer_norm_eps: number;
}

/** transformers' CLIPVisionConfig defaults fill what vision_config leaves out. */
export function resolveSafetyCheckerConfig(json: ConfigJson): SafetyCheckerConfig {
  const architectures = Array.isArray(json.architectures) ? (json.architectures as string[]) : [];
  if (!architectures.includes('StableDiffusionSafetyChecker')) {
    throw new Error(`safety checker config: architectures ${JSON.stringify(architectures)} do not name StableDiffusionSafetyChecker`);
  }
  const vision = json.vision_config;
  if (vision === null || typeof vision !== 'object' || Array.isArray(vision)) throw new Error('safety checker config: vision_config is missing');
  const read = new ConfigReader(vision as ConfigJson, 'safety checker vision_config');
  const config: ClipVisionConfig = {
    hidden_size: read.positiveInteger('hidden_size', 768),
    intermediate_size: read.positiveInteger('intermediate_size', 3072),
    num_hidden_layers: read.positiveInteger('num_hidden_layers', 12),
    num_attention_heads: read.positiveInteger('num_attention_heads', 12),
    num_channels: read.positiveInteger('num_channels', 3),
    image_size: read.positiveInteger('image_size', 224),
    patch_size: read.positiveInteger('patch_size', 32),
    hidden_act: read.oneOf('hidden_act', ['quick_gelu', 'gelu'] as const, 'quick_gelu'),
    layer_norm_eps: read.number('layer_norm_eps', 1e-5),
  };
  if (config.hidden_size % config.num_attention_heads !== 0) {
    throw new Error(`safety checker config: hidden_size ${config.hidden_size} does not split into ${config.num_attention_heads} heads`);
  }
  if (config.image_size % config.patch_size !== 0) throw new Error(`safety checker config: image_size ${config.image_size} is not a whole number of ${config.patch_size}-pixel patches`);
  return {
    architectures: ['StableDiffusionSafetyChecker'],
    projection_dim: new ConfigReader(json, 'safety checker').positiveInteger('projection_dim', 512),
    vision_config: config,
  };
}

const DOWN_BLOCKS = ['CrossAttnDownBlock2D', 'DownBlock2D'] as const;
const UP_BLOCKS = ['CrossAttnUpBlock2D', 'UpBlock2D'] as const;

export function resolveUnetConfig(json: ConfigJson): UNetConfig {
  const read = new ConfigReader(json, 'unet');
  read.oneOf('act_fn', ['silu'], 'silu');
  read.oneOf('time_embedding_type', ['positional'], 'positional');
  read.oneOf('resnet_time_scale_shift', ['default'], 'default');
  read.oneOf('attention_type', ['default'], 'default');
  for (const key of ['center_input_sample', 'only_cross_attention', 'dual_cross_attention', 'class_embed_type', 'num_class_embeds', 'encoder_hid_dim',
    'encoder_hid_dim_type', 'time_embedding_dim', 'time_embedding_act_fn', 'timestep_post_act', 'resnet_skip_time_act', 'cross_attention_norm', 'class_embeddings_concat']) {
    read.off(key);
  }
  read.off('mid_block_scale_factor', 1);
  read.off('resnet_out_scale_factor', 1);
  const blockOutChannels = read.integers('block_out_channels', [320, 640, 1280, 1280]);
  const downBlocks = read.strings('down_block_types', DOWN_BLOCKS, ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D']);
  const upBlocks = read.strings('up_block_types', UP_BLOCKS, ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D']);
  if (downBlocks.length !== blockOutChannels.length || upBlocks.length !== blockOutChannels.length) {
    throw new Error(`unet config: ${blockOutChannels.length} block_out_channels but ${downBlocks.length} down and ${upBlocks.length} up blocks`);
  }
  const additionEmbedType = read.oneOf('addition_embed_type', ['text_time', null] as const, null);
  const config: UNetConfig = {
    sample_size: read.optionalInteger('sample_size'),
    in_channels: read.positiveInteger('in_channels', 4),
    out_channels: read.positiveInteger('out_channels', 4),
    flip_sin_to_cos: read.boolean('flip_sin_to_cos', true),
    freq_shift: read.number('freq_shift', 0),
    down_block_types: downBlocks,
    mid_block_type: read.oneOf('mid_block_type', ['UNetMidBlock2DCrossAttn'] as const, 'UNetMidBlock2DCrossAttn'),
    up_block_types: upBlocks,
    block_out_channels: blockOutChannels,
    layers_per_block: read.positiveInteger('layers_per_block', 2),
    downsample_padding: read.number('downsample_padding', 1),
    norm_num_groups: read.positiveInteger('norm_num_groups', 32),
    norm_eps: read.number('norm_eps', 1e-5),
    cross_attention_dim: read.positiveInteger('cross_attention_dim', 1280),
    transformer_layers_per_block: read.integerOrIntegers('transformer_layers_per_block', 1),
    reverse_transformer_layers_per_block: json.reverse_transformer_layers_per_block == null ? null : read.integers('reverse_transformer_layers_per_block', []),
    attention_head_dim: read.integerOrIntegers('attention_head_dim', 8),
    num_attention_heads: json.num_attention_heads == null ? null : read.integerOrIntegers('num_attention_heads', 8),
    use_linear_projection: read.boolean('use_linear_projection', false),
    upcast_attention: read.boolean('upcast_attention', false),
    addition_embed_type: additionEmbedType,
    addition_time_embed_dim: read.optionalInteger('addition_time_embed_dim'),
    projection_class_embeddings_input_dim: read.optionalInteger('projection_class_embeddings_input_dim'),
    time_cond_proj_dim: read.optionalInteger('time_cond_proj_dim'),
    conv_in_kernel: read.positiveInteger('conv_in_kernel', 3),
    conv_out_kernel: read.positiveInteger('conv_out_kernel', 3),
  };
  if (additionEmbedType === 'text_time' && (config.addition_time_embed_dim === null || config.projection_class_embeddings_input_dim === null)) {
    throw new Error('unet config: addition_embed_type "text_time" needs addition_time_embed_dim and projection_class_embeddings_input_dim');
  }
  for (const key of ['transformer_layers_per_block', 'attention_head_dim', 'num_attention_heads'] as const) {
    const value = config[key];
    if (Array.isArray(value) && value.length !== blockOutChannels.length) throw new Error(`unet config: ${key} has ${value.length} entries for ${blockOutChannels.length} blocks`);
  }
  return config;
}

export function resolveAutoencoderKLConfig(json: ConfigJson): AutoencoderKLConfig {
  const read = new ConfigReader(json, 'vae');
  read.oneOf('act_fn', ['silu'], 'silu');
  read.off('latents_mean');
  read.off('latents_std');
  const blockOutChannels = read.integers('block_out_channels', [64]);
  const down = read.strings('down_block_types', ['DownEncoderBlock2D'], ['DownEncoderBlock2D']);
  const up = read.strings('up_block_types', ['UpDecoderBlock2D'], ['UpDecoderBlock2D']);
  if (down.length !== blockOutChannels.length || up.length !== blockOutChannels.length) {
    throw new Error(`vae config: ${blockOutChannels.length} block_out_channels but ${down.length} down and ${up.length} up blocks`);
  }
  const shift = json.shift_factor ?? null;
  return {
    _class_name: 'AutoencoderKL',
    in_channels: read.positiveInteger('in_channels', 3),
    out_channels: read.positiveInteger('out_channels', 3),
    down_block_types: down,
    up_block_types: up,
    block_out_channels: blockOutChannels,
    layers_per_block: read.positiveInteger('layers_per_block', 1),
    latent_channels: read.positiveInteger('latent_channels', 4),
    norm_num_groups: read.positiveInteger('norm_num_groups', 32),
    sample_size: read.positiveInteger('sample_size', 32),
    scaling_factor: read.number('scaling_factor', 0.18215),
    shift_factor: shift === null ? null : read.number('shift_factor', 0),
    force_upcast: read.boolean('force_upcast', true),
    use_quant_conv: read.boolean('use_quant_conv', true),
    use_post_quant_conv: read.boolean('use_post_quant_conv', true),
    mid_block_add_attention: read.boolean('mid_block_add_attention', true),
  };
}

export function resolveAutoencoderTinyConfig(json: ConfigJson): AutoencoderTinyConfig {
  const read = new ConfigReader(json, 'tiny vae');
  const config: AutoencoderTinyConfig = {
    _class_name: 'AutoencoderTiny',
    in_channels: read.positiveInteger('in_channels', 3),
    out_channels: read.positiveInteger('out_channels', 3),
    encoder_block_out_channels: read.integers('encoder_block_out_channels', [64, 64, 64, 64]),
    decoder_block_out_channels: read.integers('decoder_block_out_channels', [64, 64, 64, 64]),
    num_encoder_blocks: read.integers('num_encoder_blocks', [1, 3, 3, 3]),
    num_decoder_blocks: read.integers('num_decoder_blocks', [3, 3, 3, 1]),
    act_fn: read.oneOf('act_fn', ['relu'] as const, 'relu'),
    upsample_fn: read.oneOf('upsample_fn', ['nearest'] as const, 'nearest'),
    upsampling_scaling_factor: read.positiveInteger('upsampling_scaling_factor', 2),
    latent_channels: read.positiveInteger('latent_channels', 4),
    latent_magnitude: read.number('latent_magnitude', 3),
    latent_shift: read.number('latent_shift', 0.5),
    scaling_factor: read.number('scaling_factor', 1),
    shift_factor: read.number('shift_factor', 0),
    force_upcast: read.boolean('force_upcast', false),
  };
  if (config.upsampling_scaling_factor !== 2) throw new Error('tiny vae config: upsampling_scaling_factor must be 2');
  if (config.num_encoder_blocks.length !== config.encoder_block_out_channels.length || config.num_decoder_blocks.length !== config.decoder_block_out_channels.length) {
    throw new Error('tiny vae config: the block counts and block widths differ in length');
  }
  return config;
}

/** AutoencoderKL or AutoencoderTiny, by `_class_name` (AutoencoderKL when absent, as older files are). */
export function resolveVaeConfig(json: ConfigJson): VaeConfig {
  const className = json._class_name ?? 'AutoencoderKL';
  if (className === 'AutoencoderKL') return resolveAutoencoderKLConfig(json);
  if (className === 'AutoencoderTiny') return resolveAutoencoderTinyConfig(json);
  throw new Error(`vae config: ${JSON.stringify(className)} is not supported (supported: AutoencoderKL, AutoencoderTiny)`);
}

/** Heads of each down block (the mid block uses the last, up blocks the reverse). */
export function unetHeads(config: UNetConfig): number[] {
  const heads = config.num_attention_heads ?? config.attention_head_dim;
  return typeof heads === 'number' ? config.block_out_channels.map(() => heads) : heads;
}

/** Transformer layers of each down block (the mid block uses the last). */
export function unetTransformerLayers(config: UNetConfig): number[] {
  const layers = config.transformer_layers_per_block;
  return typeof layers === 'number' ? config.block_out_channels.map(() => layers) : layers;
}
